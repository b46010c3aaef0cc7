package client

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// AnyVersion, as the version of Set, Delete, SetOp, DeleteOp or CheckOp,
// skips the version check.
const AnyVersion int64 = -1

// CreateOption sets an optional field of a create.
type CreateOption func(*colonyv1.CreateRequest)

// Ephemeral makes the znode EPHEMERAL, owned by the session: it is deleted
// when the session ends. Ephemeral znodes cannot have children.
func Ephemeral(sessionID uint64) CreateOption {
	return func(r *colonyv1.CreateRequest) {
		r.Kind = colonyv1.NodeKind_NODE_KIND_EPHEMERAL
		r.SessionId = sessionID
	}
}

// Sequential appends the parent's 10-digit, zero-padded counter to the name;
// Create returns the resulting path. It combines with any kind.
func Sequential() CreateOption {
	return func(r *colonyv1.CreateRequest) { r.Sequential = true }
}

// Container makes the znode a CONTAINER: the leader deletes it once it has had
// children and has none left.
func Container() CreateOption {
	return func(r *colonyv1.CreateRequest) { r.Kind = colonyv1.NodeKind_NODE_KIND_CONTAINER }
}

// TTL makes the znode a TTL node: the leader deletes it when it has not been
// modified for d and has no children. d is rounded up to a millisecond.
func TTL(d time.Duration) CreateOption {
	return func(r *colonyv1.CreateRequest) {
		r.Kind = colonyv1.NodeKind_NODE_KIND_TTL
		r.TtlMs = d.Milliseconds()
		if d > 0 && r.TtlMs == 0 {
			r.TtlMs = 1
		}
	}
}

// ReadOption sets an optional knob of a read (Get, Exists, Children).
type ReadOption func(*readOptions)

type readOptions struct {
	session bool
	header  **colonyv1.ResponseHeader
}

// WithSessionConsistency lets any node answer the read from its local state,
// once it has applied at least the highest zxid this client has seen: never
// older than what the client already observed, without a round trip to the
// leader. The default is a linearizable read.
func WithSessionConsistency() ReadOption {
	return func(o *readOptions) { o.session = true }
}

// WithHeader stores the read's response header in *h; its Zxid is the state
// the read reflects, the after_zxid to watch from (AfterZxid) so that no
// change is missed or seen twice.
func WithHeader(h **colonyv1.ResponseHeader) ReadOption {
	return func(o *readOptions) { o.header = h }
}

// readParams resolves read options into the request's consistency fields.
func (c *Client) readParams(opts []ReadOption) (readOptions, colonyv1.Consistency, uint64) {
	var o readOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.session {
		return o, colonyv1.Consistency_CONSISTENCY_SESSION, c.zxid.Load()
	}
	return o, colonyv1.Consistency_CONSISTENCY_LINEARIZABLE, 0
}

func (o readOptions) setHeader(h *colonyv1.ResponseHeader) {
	if o.header != nil {
		*o.header = h
	}
}

// versionPtr turns a version argument into an expected_version field.
func versionPtr(version int64) *int64 {
	if version == AnyVersion {
		return nil
	}
	return &version
}

// Create creates a znode at path with data and returns its path (with the
// sequence suffix, for Sequential) and stat. The parent must exist.
func (c *Client) Create(ctx context.Context, path string, data []byte, opts ...CreateOption) (string, *colonyv1.Stat, error) {
	req := &colonyv1.CreateRequest{Path: path, Data: data}
	for _, opt := range opts {
		opt(req)
	}
	req.RequestId = requestID(ctx)
	var resp *colonyv1.CreateResponse
	err := c.call(ctx, retrySafe, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.tree.Create(ctx, req)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	c.observe(resp.GetHeader())
	return resp.GetPath(), resp.GetStat(), nil
}

// Get returns the data and stat of the znode at path.
func (c *Client) Get(ctx context.Context, path string, opts ...ReadOption) ([]byte, *colonyv1.Stat, error) {
	o, cons, minZxid := c.readParams(opts)
	req := &colonyv1.GetRequest{Path: path, Consistency: cons, MinZxid: minZxid}
	var resp *colonyv1.GetResponse
	err := c.call(ctx, retrySafe, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.tree.Get(ctx, req)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	c.observe(resp.GetHeader())
	o.setHeader(resp.GetHeader())
	return resp.GetData(), resp.GetStat(), nil
}

// Set replaces the data of the znode at path if its version is version
// (compare-and-set; AnyVersion: whatever the version), and returns the new
// stat. A mismatch is ErrBadVersion.
func (c *Client) Set(ctx context.Context, path string, data []byte, version int64) (*colonyv1.Stat, error) {
	req := &colonyv1.SetRequest{
		Path:            path,
		Data:            data,
		ExpectedVersion: versionPtr(version),
		RequestId:       requestID(ctx),
	}
	var resp *colonyv1.SetResponse
	err := c.call(ctx, retrySafe, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.tree.Set(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	return resp.GetStat(), nil
}

// Delete deletes the znode at path if its version is version (AnyVersion:
// whatever the version). A znode with children is not deleted (ErrNotEmpty).
func (c *Client) Delete(ctx context.Context, path string, version int64) error {
	req := &colonyv1.DeleteRequest{
		Path:            path,
		ExpectedVersion: versionPtr(version),
		RequestId:       requestID(ctx),
	}
	var resp *colonyv1.DeleteResponse
	err := c.call(ctx, retrySafe, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.tree.Delete(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	c.observe(resp.GetHeader())
	return nil
}

// Exists reports whether the znode at path exists, with its stat if it does.
func (c *Client) Exists(ctx context.Context, path string, opts ...ReadOption) (bool, *colonyv1.Stat, error) {
	o, cons, minZxid := c.readParams(opts)
	req := &colonyv1.ExistsRequest{Path: path, Consistency: cons, MinZxid: minZxid}
	var resp *colonyv1.ExistsResponse
	err := c.call(ctx, retrySafe, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.tree.Exists(ctx, req)
		return err
	})
	if err != nil {
		return false, nil, err
	}
	c.observe(resp.GetHeader())
	o.setHeader(resp.GetHeader())
	return resp.GetExists(), resp.GetStat(), nil
}

// Children returns the sorted names (not paths) of the children of the znode
// at path, and the znode's stat.
func (c *Client) Children(ctx context.Context, path string, opts ...ReadOption) ([]string, *colonyv1.Stat, error) {
	o, cons, minZxid := c.readParams(opts)
	req := &colonyv1.ChildrenRequest{Path: path, Consistency: cons, MinZxid: minZxid}
	var resp *colonyv1.ChildrenResponse
	err := c.call(ctx, retrySafe, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.tree.Children(ctx, req)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	c.observe(resp.GetHeader())
	o.setHeader(resp.GetHeader())
	return resp.GetNames(), resp.GetStat(), nil
}

// Multi applies ops atomically: all of them or none. Build ops with CheckOp,
// CreateOp, SetOp and DeleteOp. When an op fails, Multi returns the response
// (with FailedOp and every op's result) and an error that wraps the failing
// op's error, so errors.Is(err, ErrBadVersion) and the like work.
func (c *Client) Multi(ctx context.Context, ops ...*colonyv1.Op) (*colonyv1.MultiResponse, error) {
	req := &colonyv1.MultiRequest{Ops: ops, RequestId: requestID(ctx)}
	var resp *colonyv1.MultiResponse
	err := c.call(ctx, retrySafe, hintNode, func(ctx context.Context, ep *endpoint) (err error) {
		resp, err = ep.tree.Multi(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	c.observe(resp.GetHeader())
	if resp.GetSucceeded() {
		return resp, nil
	}
	i := resp.GetFailedOp()
	var opErr error = status.Error(codes.Unknown, "multi failed without an op error")
	if int(i) >= 0 && int(i) < len(resp.GetResults()) {
		if e := resp.GetResults()[i].GetError(); e != nil {
			opErr = toError(opStatus(e).Err(), hintNode)
		}
	}
	return resp, fmt.Errorf("multi: op %d: %w", i, opErr)
}

// CheckOp asserts inside a Multi that the znode at path has version
// (AnyVersion: that it exists).
func CheckOp(path string, version int64) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Check{Check: &colonyv1.CheckOp{Path: path, Version: version}}}
}

// CreateOp creates a znode inside a Multi, as Create does.
func CreateOp(path string, data []byte, opts ...CreateOption) *colonyv1.Op {
	req := &colonyv1.CreateRequest{Path: path, Data: data}
	for _, opt := range opts {
		opt(req)
	}
	return &colonyv1.Op{Op: &colonyv1.Op_Create{Create: req}}
}

// SetOp sets a znode's data inside a Multi, as Set does.
func SetOp(path string, data []byte, version int64) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Set{Set: &colonyv1.SetRequest{
		Path: path, Data: data, ExpectedVersion: versionPtr(version),
	}}}
}

// DeleteOp deletes a znode inside a Multi, as Delete does.
func DeleteOp(path string, version int64) *colonyv1.Op {
	return &colonyv1.Op{Op: &colonyv1.Op_Delete{Delete: &colonyv1.DeleteRequest{
		Path: path, ExpectedVersion: versionPtr(version),
	}}}
}
