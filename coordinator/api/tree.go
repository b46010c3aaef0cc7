package api

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/internal/ztree"
	peerv1 "github.com/colonymesh/colony/proto/colony/peer/v1"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// treeServer serves colony.v1.Tree: writes go through raft (Node.Propose),
// reads are served from a view at the consistency asked for.
type treeServer struct {
	colonyv1.UnimplementedTreeServer
	s *Service
}

// write validates ops, commits them as one transaction and returns its result.
func (s *Service) write(ctx context.Context, requestID string, ops ...*colonyv1.Op) (*colonyv1.MultiResponse, error) {
	if err := ztree.ValidateOps(ops, s.cfg.Limits); err != nil {
		return nil, err
	}
	if err := checkNotReserved(ops); err != nil {
		return nil, err
	}
	scope, err := requestScope(ctx)
	if err != nil {
		return nil, err
	}
	// Owner: the FSM lets only a session's owner create ephemeral nodes in it.
	cmd := &peerv1.Command{ClientId: scope, Owner: s.owner(ctx), RequestId: requestID, Op: &peerv1.Command_Txn{Txn: &peerv1.Txn{Ops: ops}}}
	res, err := s.node.Propose(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if e := res.GetError(); e != nil {
		return nil, ztree.FromOpError(e)
	}
	txn := res.GetTxn()
	if txn == nil || len(txn.Results) != len(ops) {
		return nil, fmt.Errorf("coordinator: malformed transaction result %v", res)
	}
	txn.Header = s.node.Header()
	return txn, nil
}

// writeOne commits a single op and returns its result, or its error.
func (s *Service) writeOne(ctx context.Context, requestID string, op *colonyv1.Op) (*colonyv1.OpResult, *colonyv1.ResponseHeader, error) {
	txn, err := s.write(ctx, requestID, op)
	if err != nil {
		return nil, nil, err
	}
	if !txn.Succeeded {
		return nil, nil, ztree.FromOpError(txn.Results[txn.FailedOp].GetError())
	}
	return txn.Results[0], txn.Header, nil
}

func (a *treeServer) Create(ctx context.Context, req *colonyv1.CreateRequest) (*colonyv1.CreateResponse, error) {
	r, h, err := a.s.writeOne(ctx, req.RequestId, &colonyv1.Op{Op: &colonyv1.Op_Create{Create: req}})
	if err != nil {
		return nil, ToStatus(err)
	}
	c := r.GetCreate()
	return &colonyv1.CreateResponse{Header: h, Path: c.GetPath(), Stat: c.GetStat()}, nil
}

func (a *treeServer) Set(ctx context.Context, req *colonyv1.SetRequest) (*colonyv1.SetResponse, error) {
	r, h, err := a.s.writeOne(ctx, req.RequestId, &colonyv1.Op{Op: &colonyv1.Op_Set{Set: req}})
	if err != nil {
		return nil, ToStatus(err)
	}
	return &colonyv1.SetResponse{Header: h, Stat: r.GetSet().GetStat()}, nil
}

func (a *treeServer) Delete(ctx context.Context, req *colonyv1.DeleteRequest) (*colonyv1.DeleteResponse, error) {
	_, h, err := a.s.writeOne(ctx, req.RequestId, &colonyv1.Op{Op: &colonyv1.Op_Delete{Delete: req}})
	if err != nil {
		return nil, ToStatus(err)
	}
	return &colonyv1.DeleteResponse{Header: h}, nil
}

func (a *treeServer) Multi(ctx context.Context, req *colonyv1.MultiRequest) (*colonyv1.MultiResponse, error) {
	if len(req.Ops) == 0 {
		return nil, status.Error(codes.InvalidArgument, "ops: a multi needs at least 1 op")
	}
	txn, err := a.s.write(ctx, req.RequestId, req.Ops...)
	if err != nil {
		return nil, ToStatus(err)
	}
	return txn, nil
}

// view waits until this node may serve a read at the requested consistency
// and returns the tree as of then.
func (s *Service) view(ctx context.Context, path string, c colonyv1.Consistency, minZxid uint64) (*ztree.View, error) {
	if err := ztree.ValidatePath(path); err != nil {
		return nil, err
	}
	if _, ok := colonyv1.Consistency_name[int32(c)]; !ok {
		return nil, fmt.Errorf("%w: consistency: unknown value %d", ztree.ErrInvalidArgument, c)
	}
	return s.node.ReadView(ctx, c, minZxid)
}

func (a *treeServer) Get(ctx context.Context, req *colonyv1.GetRequest) (*colonyv1.GetResponse, error) {
	v, err := a.s.view(ctx, req.Path, req.Consistency, req.MinZxid)
	if err != nil {
		return nil, ToStatus(err)
	}
	data, st, err := v.Get(req.Path)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &colonyv1.GetResponse{Header: a.s.viewHeader(v), Data: data, Stat: st}, nil
}

func (a *treeServer) Exists(ctx context.Context, req *colonyv1.ExistsRequest) (*colonyv1.ExistsResponse, error) {
	v, err := a.s.view(ctx, req.Path, req.Consistency, req.MinZxid)
	if err != nil {
		return nil, ToStatus(err)
	}
	resp := &colonyv1.ExistsResponse{Header: a.s.viewHeader(v)}
	if _, st, err := v.Get(req.Path); err == nil {
		resp.Exists, resp.Stat = true, st
	} else if ztree.Code(err) != codes.NotFound {
		return nil, ToStatus(err)
	}
	return resp, nil
}

func (a *treeServer) Children(ctx context.Context, req *colonyv1.ChildrenRequest) (*colonyv1.ChildrenResponse, error) {
	v, err := a.s.view(ctx, req.Path, req.Consistency, req.MinZxid)
	if err != nil {
		return nil, ToStatus(err)
	}
	names, st, err := v.Children(req.Path)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &colonyv1.ChildrenResponse{Header: a.s.viewHeader(v), Names: names, Stat: st}, nil
}

// checkNotReserved refuses tree writes under the paths the breaker engine
// owns: a hand-written record or policy could never be validated, and the
// engine, as the only writer, would not know of it.
func checkNotReserved(ops []*colonyv1.Op) error {
	for i, op := range ops {
		var p string
		switch o := op.Op.(type) {
		case *colonyv1.Op_Create:
			p = o.Create.GetPath()
		case *colonyv1.Op_Set:
			p = o.Set.GetPath()
		case *colonyv1.Op_Delete:
			p = o.Delete.GetPath()
		default:
			continue
		}
		for _, root := range contract.EngineRoots {
			if p == root || strings.HasPrefix(p, root+"/") {
				return status.Errorf(codes.PermissionDenied, "ops[%d]: path %s is written only by the breaker engine; use the Breakers API (colony breaker, colony policy)", i, p)
			}
		}
	}
	return nil
}
