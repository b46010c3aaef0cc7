package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// mirror keeps a local copy of the data of every node under root, down to
// depth levels, in step with the coordinator: it reads the subtree, follows a
// persistent recursive watch from before the read, and starts again (watch
// first, then read) when the coordinator says events may have been missed.
// Changes are handed to apply in zxid order, per path never older than what
// it already has, so a sidecar that fails over to another coordinator node
// never misses a transition and never goes back to an older one.
type mirror struct {
	c     *client.Client
	root  string
	depth int
	log   *slog.Logger
	// apply receives every change: data nil and deleted set for a removed
	// node. reset is set on the first call of each full read, which lists
	// every node (full); the receiver drops nodes that are not in it.
	apply func(u mirrorUpdate)
	// contact is called whenever the coordinator answered (a read or an
	// event): it measures staleness.
	contact func()
}

// mirrorUpdate is one change, or after a (re)read the whole subtree.
type mirrorUpdate struct {
	full    map[string][]byte // set after a full read: every node and its data
	path    string
	data    []byte
	deleted bool
	zxid    uint64
}

// run mirrors until ctx ends.
func (m *mirror) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := m.sync(ctx)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, client.ErrResync) {
			m.log.Info("coordinator asked for a resync; reading again", "root", m.root, "err", err)
			backoff = 100 * time.Millisecond
			continue
		}
		m.log.Warn("mirroring failed; retrying", "root", m.root, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// sync watches, reads, then follows the watch until it fails.
func (m *mirror) sync(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := m.c.Watch(wctx, m.root, colonyv1.WatchKind_WATCH_KIND_PERSISTENT, client.Recursive())
	if err != nil {
		return err
	}
	defer w.Close()
	base := w.StartZxid()
	full := map[string][]byte{}
	seen := map[string]uint64{} // path -> mzxid of what we hold
	if err := m.read(ctx, m.root, 0, full, seen); err != nil {
		return err
	}
	m.contact()
	m.apply(mirrorUpdate{full: full})
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			return err
		}
		m.contact()
		p := ev.GetPath()
		if levels(m.root, p) < 1 || levels(m.root, p) > m.depth {
			continue
		}
		last, ok := seen[p]
		if !ok {
			last = base
		}
		if ev.GetZxid() <= last {
			continue // the read already saw this change or a newer one
		}
		seen[p] = ev.GetZxid()
		switch ev.GetType() {
		case colonyv1.EventType_EVENT_TYPE_CREATED, colonyv1.EventType_EVENT_TYPE_DATA_CHANGED:
			m.apply(mirrorUpdate{path: p, data: ev.GetData(), zxid: ev.GetZxid()})
		case colonyv1.EventType_EVENT_TYPE_DELETED:
			m.apply(mirrorUpdate{path: p, deleted: true, zxid: ev.GetZxid()})
		}
	}
}

// read adds the data of the nodes below p (depth levels) to full.
func (m *mirror) read(ctx context.Context, p string, level int, full map[string][]byte, seen map[string]uint64) error {
	if level > 0 {
		data, st, err := m.c.Get(ctx, p, client.WithSessionConsistency())
		if errors.Is(err, client.ErrNoNode) {
			return nil
		}
		if err != nil {
			return err
		}
		full[p] = data
		seen[p] = st.GetMzxid()
	}
	if level == m.depth {
		return nil
	}
	kids, _, err := m.c.Children(ctx, p, client.WithSessionConsistency())
	if errors.Is(err, client.ErrNoNode) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := m.read(ctx, path.Join(p, k), level+1, full, seen); err != nil {
			return err
		}
	}
	return nil
}

// levels is how many path components p has below root (-1: not below it).
func levels(root, p string) int {
	if len(p) <= len(root) || p[:len(root)] != root || p[len(root)] != '/' {
		return -1
	}
	n := 0
	for _, c := range p[len(root):] {
		if c == '/' {
			n++
		}
	}
	return n
}
