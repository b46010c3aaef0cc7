//go:build unix

package robustness

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// keyPrefix is the parent of the workload's keys.
const keyPrefix = "/rb/"

// Bounds of one recorded operation: each attempt on one endpoint, and all
// attempts of one operation. An operation that gets no answer within
// opBudget is recorded with an unknown outcome (a write) or dropped (a
// read).
const (
	attemptTimeout = 1500 * time.Millisecond
	opBudget       = 6 * time.Second
)

// history is the record of every operation of every workload client.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// violations found while recording (zxid going backwards).
	violations []string
}

func newHistory(start time.Time) *history { return &history{start: start} }

func (h *history) ts() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

func (h *history) violation(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.violations = append(h.violations, fmt.Sprintf(format, args...))
}

// operations returns the history for checking: an operation with an unknown
// outcome returns after every other operation (it may take effect at any
// time after its call).
func (h *history) operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	var end int64
	for _, op := range h.ops {
		end = max(end, op.Return, op.Call)
	}
	out := make([]porcupine.Operation, len(h.ops))
	for i, op := range h.ops {
		if op.Output.(kvOutput).Unknown {
			op.Return = end + 1
		}
		out[i] = op
	}
	return out
}

// kvClient is one workload client: it runs one operation at a time, like a
// process of a Jepsen test, against the nodes through their client proxies,
// failing over to the next node when one does not answer.
type kvClient struct {
	id    int
	conns []*grpc.ClientConn
	cur   int
	rng   *rand.Rand
	h     *history
	keys  []string
	seq   int
	// known is the last version this client saw of each key, for CAS.
	known   map[string]int64
	maxZxid uint64 // the highest zxid in any answer this client got
	// unexpected collects errors that point to a harness bug (an invalid
	// argument), not a fault.
	unexpected []string
	// staleReads makes gets local reads (ROBUSTNESS_CANARY=stale-reads).
	staleReads bool
}

func newKVClient(id int, endpoints []string, tlsCfg *tls.Config, seed uint64, h *history, keys []string) (*kvClient, error) {
	c := &kvClient{id: id, rng: rand.New(rand.NewPCG(seed, uint64(id))), h: h, keys: keys, known: map[string]int64{}}
	for _, ep := range endpoints {
		conn, err := dial(ep, tlsCfg)
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns = append(c.conns, conn)
	}
	c.cur = id % len(c.conns)
	return c, nil
}

func (c *kvClient) close() {
	for _, conn := range c.conns {
		conn.Close()
	}
}

// run issues random operations until ctx ends.
func (c *kvClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		c.do(c.randomOp())
		sleepCtx(ctx, time.Duration(c.rng.IntN(15))*time.Millisecond)
	}
}

func (c *kvClient) randomOp() kvInput {
	key := c.keys[c.rng.IntN(len(c.keys))]
	c.seq++
	val := fmt.Sprintf("c%d-%d", c.id, c.seq)
	known, ok := c.known[key]
	if !ok || c.rng.IntN(5) == 0 {
		known = int64(c.rng.IntN(3))
	}
	switch r := c.rng.IntN(100); {
	case r < 35:
		return kvInput{Kind: opGet, Key: key}
	case r < 50:
		return kvInput{Kind: opSet, Key: key, Value: val}
	case r < 75:
		return kvInput{Kind: opCAS, Key: key, Value: val, Version: known}
	case r < 88:
		return kvInput{Kind: opCreate, Key: key, Value: val}
	case r < 94:
		return kvInput{Kind: opDelete, Key: key, Version: known}
	default:
		return kvInput{Kind: opDelete, Key: key, Version: -1}
	}
}

// do runs one operation and records it. Writes carry one request id across
// all their attempts, so the coordinator applies them once.
func (c *kvClient) do(in kvInput) {
	reqID := fmt.Sprintf("rb-c%d-%d", c.id, c.seq)
	call := c.h.ts()
	ctx, cancel := context.WithTimeout(context.Background(), opBudget)
	defer cancel()
	for attempt := 0; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		out, err := c.attempt(actx, c.conns[c.cur], in, reqID)
		acancel()
		if err == nil {
			c.observe(in, out)
			c.h.add(porcupine.Operation{ClientId: c.id, Input: in, Call: call, Output: out, Return: c.h.ts()})
			return
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.PermissionDenied, codes.OutOfRange, codes.Unimplemented:
			c.unexpected = append(c.unexpected, fmt.Sprintf("%v %s: %v", in.Kind, in.Key, err))
			if in.Kind != opGet {
				c.h.add(porcupine.Operation{ClientId: c.id, Input: in, Call: call, Output: kvOutput{Unknown: true}})
			}
			return
		}
		// No answer (Unavailable, a timeout, a cut connection): try the
		// next node, with the same request id, while the budget lasts.
		c.cur = (c.cur + 1) % len(c.conns)
		if ctx.Err() != nil || !sleepUntil(ctx, 20*time.Millisecond*time.Duration(min(attempt+1, 5))) {
			if in.Kind != opGet {
				c.h.add(porcupine.Operation{ClientId: c.id, Input: in, Call: call, Output: kvOutput{Unknown: true}})
			}
			return
		}
	}
}

// sleepUntil sleeps for d unless ctx ends first; it reports whether it slept.
func sleepUntil(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// observe checks that zxids never go backwards for this client and
// remembers the key's version.
func (c *kvClient) observe(in kvInput, out kvOutput) {
	hdr := out.headerZxid
	if hdr != 0 {
		if hdr < c.maxZxid {
			c.h.violation("client %d: %v %s answered by %s with zxid %d after this client had seen zxid %d",
				c.id, in.Kind, in.Key, out.Node, hdr, c.maxZxid)
		}
		c.maxZxid = max(c.maxZxid, hdr)
	}
	switch {
	case out.Err == errNone && in.Kind == opDelete:
		delete(c.known, in.Key)
	case out.Err == errNone && (in.Kind != opGet || out.Exists):
		c.known[in.Key] = out.Version
	}
}

// attempt sends the operation once. A definite answer, success or a
// failure of the operation's precondition, has a nil error.
func (c *kvClient) attempt(ctx context.Context, conn *grpc.ClientConn, in kvInput, reqID string) (kvOutput, error) {
	tree := colonyv1.NewTreeClient(conn)
	var out kvOutput
	var hdr *colonyv1.ResponseHeader
	var err error
	switch in.Kind {
	case opGet:
		var r *colonyv1.GetResponse
		req := &colonyv1.GetRequest{Path: in.Key}
		if c.staleReads {
			// The canary: reads served from the node's own state without
			// the read-index round trip, which an isolated or lagging node
			// serves stale. The checker must catch them.
			req.Consistency = colonyv1.Consistency_CONSISTENCY_SESSION
		}
		r, err = tree.Get(ctx, req)
		if err == nil {
			hdr = r.GetHeader()
			out = kvOutput{Exists: true, Value: string(r.GetData()), Version: r.GetStat().GetVersion(), Zxid: r.GetStat().GetMzxid()}
		}
	case opSet, opCAS:
		req := &colonyv1.SetRequest{Path: in.Key, Data: []byte(in.Value), RequestId: reqID}
		if in.Kind == opCAS {
			v := in.Version
			req.ExpectedVersion = &v
		}
		var r *colonyv1.SetResponse
		r, err = tree.Set(ctx, req)
		if err == nil {
			hdr = r.GetHeader()
			out = kvOutput{Version: r.GetStat().GetVersion(), Zxid: r.GetStat().GetMzxid()}
		}
	case opCreate:
		var r *colonyv1.CreateResponse
		r, err = tree.Create(ctx, &colonyv1.CreateRequest{Path: in.Key, Data: []byte(in.Value), RequestId: reqID})
		if err == nil {
			hdr = r.GetHeader()
			out = kvOutput{Version: r.GetStat().GetVersion(), Zxid: r.GetStat().GetMzxid()}
		}
	case opDelete:
		req := &colonyv1.DeleteRequest{Path: in.Key, RequestId: reqID}
		if in.Version >= 0 {
			v := in.Version
			req.ExpectedVersion = &v
		}
		var r *colonyv1.DeleteResponse
		r, err = tree.Delete(ctx, req)
		if err == nil {
			hdr = r.GetHeader()
			out = kvOutput{Zxid: r.GetHeader().GetZxid()}
		}
	}
	if err != nil {
		kind, ok := definiteError(in, err)
		if !ok {
			return kvOutput{}, err
		}
		if in.Kind == opGet {
			return kvOutput{Exists: false}, nil
		}
		return kvOutput{Err: kind}, nil
	}
	out.Node = hdr.GetMemberId()
	out.headerZxid = hdr.GetZxid()
	return out, nil
}

// definiteError maps an error that answers the operation (its precondition
// failed) to the model's failure; anything else is no answer.
func definiteError(in kvInput, err error) (errKind, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return errNone, false
	}
	msg := st.Message()
	switch st.Code() {
	case codes.NotFound:
		if strings.Contains(msg, "node ") || strings.HasPrefix(msg, "node") {
			return errNoNode, true
		}
	case codes.AlreadyExists:
		return errNodeExists, true
	case codes.FailedPrecondition:
		if strings.Contains(msg, "version") {
			return errBadVersion, true
		}
	}
	return errNone, false
}
