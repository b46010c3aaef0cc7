package recipe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// observeRetryDelay is the pause before Observe reads again after a failed
// read or watch.
const observeRetryDelay = 100 * time.Millisecond

// Election is one participant in a named leader election: the lock recipe,
// where the holder is the leader and each candidate's node carries its value.
// Candidates become leader in the order they campaigned. The leader's grant
// carries a fencing token with the same guarantees as a lock's.
//
// Like a Mutex, an Election holds at most one candidacy at a time and its
// node is owned by its Session: when the session ends, so does the
// leadership.
type Election struct {
	name string
	k    contender
}

// Leader is an election's leader: its node, the value it campaigned with,
// and its fencing token. The zero Leader (empty Path) means no leader.
type Leader struct {
	Path  string
	Value []byte
	Token Token
}

// NewElection returns a participant in the election called name, whose nodes
// live under /colony/elections/<name>/ and are owned by s. s may be nil for a
// participant that only calls Leader and Observe. Names are as for NewMutex.
func NewElection(c *client.Client, s *client.Session, name string) (*Election, error) {
	if err := validateName("election", name); err != nil {
		return nil, err
	}
	return &Election{name: name, k: contender{
		c: c, s: s, dir: electionsDir + "/" + name, kind: kindCandidate,
		kinds: []string{kindCandidate},
	}}, nil
}

// Name returns the election's name.
func (e *Election) Name() string { return e.name }

// Campaign enters the election with value and waits until this candidate is
// the leader, then returns its grant. If ctx or the session ends first, the
// candidacy is withdrawn (its node deleted) and the error matches ctx's cause
// or client.ErrSessionExpired.
func (e *Election) Campaign(ctx context.Context, value []byte) (*Grant, error) {
	g, err := e.k.acquire(ctx, value, true)
	if err != nil {
		return nil, fmt.Errorf("campaign %q: %w", e.name, err)
	}
	return g, nil
}

// Resign gives up the leadership: it deletes the leader's node, so the next
// candidate becomes leader, and ends the grant. Its errors are Unlock's.
func (e *Election) Resign(ctx context.Context) error {
	if err := e.k.release(ctx); err != nil {
		return fmt.Errorf("resign %q: %w", e.name, err)
	}
	return nil
}

// Grant returns the leadership grant, or nil if this participant does not lead.
func (e *Election) Grant() *Grant {
	e.k.mu.Lock()
	defer e.k.mu.Unlock()
	return e.k.grant
}

// Leader returns the current leader, or ErrNoLeader if there is no candidate.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	l, _, err := e.leader(ctx)
	if err != nil {
		return Leader{}, fmt.Errorf("leader of %q: %w", e.name, err)
	}
	if l.Path == "" {
		return Leader{}, fmt.Errorf("leader of %q: %w", e.name, ErrNoLeader)
	}
	return l, nil
}

// leader reads the current leader (zero if none) and returns the zxid of the
// state it reflects.
func (e *Election) leader(ctx context.Context) (Leader, uint64, error) {
	for {
		ms, zxid, err := e.k.members(ctx, false)
		if err != nil {
			return Leader{}, 0, err
		}
		if zxid == 0 {
			// No directory: take the zxid from a read of it, so a watch
			// from there misses nothing.
			var hdr *colonyv1.ResponseHeader
			if _, _, err := e.k.c.Exists(ctx, e.k.dir, client.WithHeader(&hdr)); err != nil {
				return Leader{}, 0, fmt.Errorf("stat %s: %w", e.k.dir, err)
			}
			zxid = hdr.GetZxid()
			if ms, _, err = e.k.members(ctx, false); err != nil {
				return Leader{}, 0, err
			}
			if len(ms) > 0 { // created meanwhile: read again
				continue
			}
		}
		if len(ms) == 0 {
			return Leader{}, zxid, nil
		}
		first := ms[0]
		for _, m := range ms[1:] {
			if m.seq < first.seq {
				first = m
			}
		}
		p := e.k.dir + "/" + first.name
		data, st, err := e.k.c.Get(ctx, p)
		if errors.Is(err, client.ErrNoNode) {
			continue // it resigned meanwhile
		}
		if err != nil {
			return Leader{}, 0, fmt.Errorf("get %s: %w", p, err)
		}
		// The node existed at zxid or later, and a leader's node is only
		// ever deleted: it led at zxid.
		return Leader{Path: p, Value: data, Token: Token(st.GetCzxid())}, zxid, nil
	}
}

// Observe reports the election's leader and every change of it on the
// returned channel: first the current leader (the zero Leader if there is
// none), then each new leader, or the zero Leader when the last candidate
// goes. A leader that comes and goes between two reads may be skipped. The
// channel is closed when ctx ends, once Observe's goroutine has finished;
// read it until then.
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	go func() {
		defer close(ch)
		e.observe(ctx, ch)
	}()
	return ch
}

func (e *Election) observe(ctx context.Context, ch chan<- Leader) {
	var (
		last Leader
		sent bool
	)
	for ctx.Err() == nil {
		l, zxid, err := e.leader(ctx)
		if err != nil {
			pause(ctx, observeRetryDelay)
			continue
		}
		if !sent || l.Path != last.Path {
			select {
			case ch <- l:
			case <-ctx.Done():
				return
			}
			last, sent = l, true
		}
		e.waitLeaderChange(ctx, l, zxid)
	}
}

// waitLeaderChange waits, from zxid on, for an event that may change the
// leader l: its node's delete, or any node's create when there is no leader.
// It also returns when it cannot tell (the watch failed), so the caller
// reads again.
func (e *Election) waitLeaderChange(ctx context.Context, l Leader, zxid uint64) {
	w, err := e.k.c.Watch(ctx, e.k.dir, colonyv1.WatchKind_WATCH_KIND_PERSISTENT,
		client.Recursive(), client.AfterZxid(zxid))
	if err != nil {
		if !errors.Is(err, client.ErrResync) {
			pause(ctx, observeRetryDelay)
		}
		return
	}
	defer w.Close()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			if !errors.Is(err, client.ErrResync) {
				pause(ctx, observeRetryDelay)
			}
			return
		}
		switch {
		case l.Path == "":
			return // anything may have made a leader
		case ev.GetPath() == l.Path && ev.GetType() != colonyv1.EventType_EVENT_TYPE_DATA_CHANGED:
			return // the leader's node went
		}
	}
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
