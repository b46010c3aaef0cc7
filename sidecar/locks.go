package sidecar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/wiretime"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/recipe"
)

// Limits of the lock API, per sidecar.
const (
	maxGrants      = 1000
	defaultLockTTL = 10 * time.Second
	maxLockTTL     = 5 * time.Minute
)

// locks serves colony.v1.Locks and colony.v1.Elections: the recipes of
// package recipe, each grant on a coordinator session of its own (so its TTL
// is the app's choice, and losing one grant never ends another).
type locks struct {
	colonyv1.UnimplementedLocksServer
	colonyv1.UnimplementedElectionsServer
	s *Sidecar

	mu     sync.Mutex
	active int               // grants held or being acquired
	leases map[string]*lease // Acquire's leases by id
}

// lease is one Acquire grant, alive while the app keeps it alive.
type lease struct {
	m        *recipe.Mutex
	sess     *client.Session
	ttl      time.Duration
	deadline time.Time // the app's keep-alives push it
}

func newLocks(s *Sidecar) *locks { return &locks{s: s, leases: map[string]*lease{}} }

func lockTTL(ms int64) (time.Duration, error) {
	ttl := wiretime.Millis(ms) // saturates: a huge ttl_ms stays above the maximum
	switch {
	case ms == 0:
		return defaultLockTTL, nil
	case ms < 0 || ttl > maxLockTTL:
		return 0, status.Errorf(codes.InvalidArgument, "ttl_ms: %d is outside 1..%d (0: %v)", ms, maxLockTTL.Milliseconds(), defaultLockTTL)
	}
	return ttl, nil
}

// begin counts a grant against the limit; end undoes it.
func (l *locks) begin() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active >= maxGrants {
		return status.Errorf(codes.ResourceExhausted, "this sidecar already holds or awaits %d locks and elections, its limit", maxGrants)
	}
	l.active++
	return nil
}

func (l *locks) end() {
	l.mu.Lock()
	l.active--
	l.mu.Unlock()
}

// session opens a coordinator session for one grant.
func (l *locks) session(ctx context.Context, ttl time.Duration, what string) (*client.Session, error) {
	sess, err := l.s.c.OpenSession(ctx, ttl, l.s.cfg.Service+"/"+l.s.cfg.Instance+"/"+what)
	if err != nil {
		return nil, lockStatus(err)
	}
	return sess, nil
}

// closeSession ends a grant's session, releasing whatever it held.
func closeSession(sess *client.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = sess.Close(ctx)
}

// lockStatus maps recipe and client errors to gRPC statuses for apps.
func lockStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, recipe.ErrInvalidName):
		return status.Errorf(codes.InvalidArgument, "name: %v", err)
	case errors.Is(err, recipe.ErrLocked):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, client.ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, recipe.ErrLost), errors.Is(err, client.ErrSessionExpired):
		return status.Error(codes.Aborted, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	return status.Error(codes.Internal, err.Error())
}

func (l *locks) Hold(stream colonyv1.Locks_HoldServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := recipe.ValidateName(first.GetName()); err != nil {
		return status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	ttl, err := lockTTL(first.GetTtlMs())
	if err != nil {
		return err
	}
	if err := l.begin(); err != nil {
		return err
	}
	defer l.end()
	ctx := stream.Context()
	sess, err := l.session(ctx, ttl, "lock/"+first.Name)
	if err != nil {
		return err
	}
	defer closeSession(sess)
	m, err := recipe.NewMutex(l.s.c, sess, first.Name)
	if err != nil {
		return lockStatus(err)
	}
	var g *recipe.Grant
	if first.Try {
		g, err = m.TryLock(ctx)
	} else {
		g, err = m.Lock(ctx)
	}
	if err != nil {
		return lockStatus(err)
	}
	if err := stream.Send(&colonyv1.HoldResponse{Token: uint64(g.Token()), Path: g.Path()}); err != nil {
		return err
	}
	// The app releases by sending release or by closing its side. The
	// reader is the sidecar's (Close waits for it): it may outlive this
	// handler until gRPC ends the stream, which Close's server stop does.
	released := make(chan struct{})
	if !l.s.goFunc(func() {
		defer close(released)
		for {
			req, err := stream.Recv()
			if err != nil || req.GetRelease() {
				return
			}
		}
	}) {
		return status.Error(codes.Unavailable, "sidecar shutting down") // the deferred session close releases the lock
	}
	select {
	case <-released:
	case <-ctx.Done():
	case <-g.Done():
		reason := fmt.Sprint(g.Err())
		_ = stream.Send(&colonyv1.HoldResponse{Token: uint64(g.Token()), Path: g.Path(), Lost: true, Reason: reason})
		return status.Errorf(codes.Aborted, "lock %s lost: %s", first.Name, reason)
	}
	uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return lockStatus(ignoreNotHeld(m.Unlock(uctx)))
}

func ignoreNotHeld(err error) error {
	if errors.Is(err, recipe.ErrNotHeld) || errors.Is(err, recipe.ErrLost) {
		return nil
	}
	return err
}

func (l *locks) Acquire(ctx context.Context, req *colonyv1.AcquireRequest) (*colonyv1.AcquireResponse, error) {
	if err := recipe.ValidateName(req.GetName()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	ttl, err := lockTTL(req.GetTtlMs())
	if err != nil {
		return nil, err
	}
	if err := l.begin(); err != nil {
		return nil, err
	}
	sess, err := l.session(ctx, ttl, "lease/"+req.Name)
	if err != nil {
		l.end()
		return nil, err
	}
	m, err := recipe.NewMutex(l.s.c, sess, req.Name)
	var g *recipe.Grant
	if err == nil {
		if req.Try {
			g, err = m.TryLock(ctx)
		} else {
			g, err = m.Lock(ctx)
		}
	}
	if err != nil {
		closeSession(sess)
		l.end()
		return nil, lockStatus(err)
	}
	var b [12]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ls := &lease{m: m, sess: sess, ttl: ttl, deadline: time.Now().Add(ttl)}
	l.mu.Lock()
	l.leases[id] = ls
	l.mu.Unlock()
	if !l.s.goFunc(func() { l.watchLease(id, ls, g) }) {
		l.mu.Lock()
		delete(l.leases, id)
		l.mu.Unlock()
		closeSession(sess)
		l.end()
		return nil, status.Error(codes.Unavailable, "sidecar shutting down")
	}
	return &colonyv1.AcquireResponse{LeaseId: id, Token: uint64(g.Token()), Path: g.Path()}, nil
}

// watchLease releases a lease when the app stops keeping it alive, and
// forgets it when it ends any other way.
func (l *locks) watchLease(id string, ls *lease, g *recipe.Grant) {
	defer l.end()
	defer closeSession(ls.sess)
	for {
		l.mu.Lock()
		left := time.Until(ls.deadline)
		_, live := l.leases[id]
		l.mu.Unlock()
		if !live {
			return // released
		}
		if left <= 0 {
			l.s.log.Warn("lock lease expired: the app stopped keeping it alive", "lock", ls.m.Name(), "lease", id, "ttl", ls.ttl)
			l.mu.Lock()
			delete(l.leases, id)
			l.mu.Unlock()
			return
		}
		t := time.NewTimer(left)
		select {
		case <-l.s.ctx.Done():
			t.Stop()
			return
		case <-g.Done():
			t.Stop()
			l.mu.Lock()
			delete(l.leases, id)
			l.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

func (l *locks) KeepAlive(_ context.Context, req *colonyv1.LeaseRequest) (*colonyv1.LeaseResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls, ok := l.leases[req.GetLeaseId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "lease %q: no such lease (released, expired or lost)", req.GetLeaseId())
	}
	ls.deadline = time.Now().Add(ls.ttl)
	return &colonyv1.LeaseResponse{}, nil
}

func (l *locks) Release(ctx context.Context, req *colonyv1.LeaseRequest) (*colonyv1.LeaseResponse, error) {
	l.mu.Lock()
	ls, ok := l.leases[req.GetLeaseId()]
	delete(l.leases, req.GetLeaseId())
	l.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "lease %q: no such lease (released, expired or lost)", req.GetLeaseId())
	}
	if err := ignoreNotHeld(ls.m.Unlock(ctx)); err != nil {
		return nil, lockStatus(err)
	}
	return &colonyv1.LeaseResponse{}, nil
}

func (l *locks) Campaign(req *colonyv1.CampaignRequest, stream colonyv1.Elections_CampaignServer) error {
	if err := recipe.ValidateName(req.GetName()); err != nil {
		return status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	if len(req.GetValue()) > 64<<10 {
		return status.Errorf(codes.InvalidArgument, "value: %d bytes, the limit is 65536", len(req.Value))
	}
	ttl, err := lockTTL(req.GetTtlMs())
	if err != nil {
		return err
	}
	if err := l.begin(); err != nil {
		return err
	}
	defer l.end()
	ctx := stream.Context()
	sess, err := l.session(ctx, ttl, "election/"+req.Name)
	if err != nil {
		return err
	}
	defer closeSession(sess)
	e, err := recipe.NewElection(l.s.c, sess, req.Name)
	if err != nil {
		return lockStatus(err)
	}
	g, err := e.Campaign(ctx, req.Value)
	if err != nil {
		return lockStatus(err)
	}
	if err := stream.Send(&colonyv1.CampaignResponse{Token: uint64(g.Token()), Path: g.Path()}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return lockStatus(ignoreNotHeld(e.Resign(rctx)))
	case <-g.Done():
		reason := fmt.Sprint(g.Err())
		_ = stream.Send(&colonyv1.CampaignResponse{Token: uint64(g.Token()), Path: g.Path(), Lost: true, Reason: reason})
		return status.Errorf(codes.Aborted, "leadership of %s lost: %s", req.Name, reason)
	}
}

func (l *locks) Observe(req *colonyv1.ObserveRequest, stream colonyv1.Elections_ObserveServer) error {
	if err := recipe.ValidateName(req.GetName()); err != nil {
		return status.Errorf(codes.InvalidArgument, "name: %v", err)
	}
	e, err := recipe.NewElection(l.s.c, nil, req.Name)
	if err != nil {
		return lockStatus(err)
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ch := e.Observe(ctx)
	var sendErr error
	for ld := range ch {
		if sendErr != nil {
			continue // drain until Observe's goroutine ends
		}
		if sendErr = stream.Send(&colonyv1.LeaderInfo{Present: ld.Path != "", Value: ld.Value, Token: uint64(ld.Token)}); sendErr != nil {
			cancel()
		}
	}
	return sendErr
}
