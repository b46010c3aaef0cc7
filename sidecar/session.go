package sidecar

// Session and registration: one coordinator session per sidecar, and the
// instance's ephemeral registration under it, opened again whenever the
// session is lost.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"time"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
)

// contact records that the coordinator answered.
func (s *Sidecar) contact() {
	s.mu.Lock()
	s.lastReply = time.Now()
	s.mu.Unlock()
}

// runSession keeps a session open and the instance registered under it,
// opening a new session (and registering again) whenever one is lost.
func (s *Sidecar) runSession() {
	backoff := 100 * time.Millisecond
	for s.ctx.Err() == nil {
		sess, err := s.register()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("registering with the coordinator failed; retrying", "err", err, "in", backoff)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		s.log.Info("registered", "session", sess.ID())
		select {
		case <-s.ctx.Done():
			return
		case <-sess.Done():
			if s.closing.Load() {
				return
			}
			s.log.Warn("coordinator session lost; registering again", "err", sess.Err())
		}
	}
}

// register opens a session and creates the instance's ephemeral node,
// replacing one left by an earlier session of the same instance.
func (s *Sidecar) register() (*client.Session, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	sess, err := s.c.OpenSession(ctx, s.cfg.SessionTTL, s.cfg.Service+"/"+s.cfg.Instance+"/sidecar")
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(s.cfg.Address)
	p, _ := strconv.Atoi(port)
	data, _ := json.Marshal(Registration{
		Service: s.cfg.Service, Instance: s.cfg.Instance, Address: host, Port: p,
		Zone: s.cfg.Zone, Protocol: s.cfg.Protocol, XDSNode: s.cfg.Service + "/" + s.cfg.Instance, Sidecar: s.Addr(),
	})
	svc := contract.ServiceDir(s.cfg.Service)
	if _, _, err := s.c.Create(ctx, svc, nil); err != nil && !errors.Is(err, client.ErrNodeExists) {
		sess.Close(ctx)
		return nil, fmt.Errorf("creating %s: %w", svc, err)
	}
	node := path.Join(svc, s.cfg.Instance)
	for range 3 {
		_, _, err = s.c.Create(ctx, node, data, client.Ephemeral(sess.ID()))
		if !errors.Is(err, client.ErrNodeExists) {
			break
		}
		// Left by an earlier run of this instance, whose session has not
		// expired yet: this run replaces it.
		if err = s.c.Delete(ctx, node, client.AnyVersion); err != nil && !errors.Is(err, client.ErrNoNode) {
			break
		}
	}
	if err != nil {
		sess.Close(ctx)
		return nil, fmt.Errorf("registering %s: %w", node, err)
	}
	s.mu.Lock()
	s.session = sess
	s.mu.Unlock()
	return sess, nil
}
