package gobreakerstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/ztree"
)

// Errors returned by a Store, besides the coordinator client's errors, which
// it wraps (errors.Is(err, client.ErrUnavailable) and the like work).
var (
	// ErrLockLost: the session that owned a lock ended, or its znode was
	// deleted, while the lock was held; another caller may have held the
	// lock since.
	ErrLockLost = errors.New("gobreakerstore: lock lost")
	// ErrNotLocked: Unlock of a name this Store does not hold.
	ErrNotLocked = errors.New("gobreakerstore: not locked")
	// ErrInvalidName: the name is empty or too long to make a znode path.
	ErrInvalidName = errors.New("gobreakerstore: invalid name")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("gobreakerstore: closed")
)

// DefaultRoot is the znode under which a Store keeps its nodes by default.
const DefaultRoot = "/colony/gobreaker"

// Config configures a Store. The zero value is usable: every zero field means
// its default.
type Config struct {
	// Root is the znode under which the Store keeps one directory per name.
	// Empty: DefaultRoot.
	Root string
	// SessionTTL is the TTL requested for the Store's session: how long after
	// the Store stops being heard from (process dead, network cut) the
	// coordinator releases the locks it held. The coordinator clamps it to its
	// own limits. Zero: 10s.
	SessionTTL time.Duration
	// SessionName describes the session's owner to operators (colony session
	// ls). Empty: "gobreakerstore".
	SessionName string
	// Timeout bounds each GetData, SetData and Unlock, retries and failover
	// included. Zero: 5s.
	Timeout time.Duration
	// LockTimeout bounds each Lock, including the wait for the holders ahead
	// of it. Zero: 5s, the time gobreaker itself keeps retrying a Lock.
	LockTimeout time.Duration
	// Logger receives a record when the Store's session is opened or lost.
	// Nil: discard.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Root:        DefaultRoot,
		SessionTTL:  10 * time.Second,
		SessionName: "gobreakerstore",
		Timeout:     5 * time.Second,
		LockTimeout: 5 * time.Second,
	}
}

func (cfg Config) withDefaults() Config {
	d := DefaultConfig()
	if cfg.Root == "" {
		cfg.Root = d.Root
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = d.SessionTTL
	}
	if cfg.SessionName == "" {
		cfg.SessionName = d.SessionName
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.LockTimeout == 0 {
		cfg.LockTimeout = d.LockTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return cfg
}

// maxSuffixBytes is the longest a path gets below a name's directory:
// "/lock/lock-" + token + "-" + a sequence number of up to 20 digits.
const maxSuffixBytes = len("/lock/lock-") + tokenLen + 1 + 20

// Validate reports whether the configuration can be used (after defaults).
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	if cfg.Root == "/" {
		errs = append(errs, errors.New("gobreakerstore: Root must not be \"/\""))
	} else if err := ztree.ValidatePath(cfg.Root); err != nil {
		errs = append(errs, fmt.Errorf("gobreakerstore: Root: %w", err))
	} else if len(cfg.Root)+2+maxSuffixBytes > ztree.MaxPathBytes {
		errs = append(errs, fmt.Errorf("gobreakerstore: Root: %d bytes leaves no room for names under the %d-byte path limit", len(cfg.Root), ztree.MaxPathBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"SessionTTL", cfg.SessionTTL}, {"Timeout", cfg.Timeout}, {"LockTimeout", cfg.LockTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("gobreakerstore: %s must not be negative, got %v", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// Store is a gobreaker.SharedDataStore backed by the coordinator. It is safe
// for concurrent use. Close it when done; it does not close the Client.
type Store struct {
	c   *client.Client
	cfg Config
	log *slog.Logger

	closed atomic.Bool

	sessMu sync.Mutex     // serialises opening sessions and Close
	sess   *storeSession  // the current session; nil before the first Lock
	wg     sync.WaitGroup // the session watchers

	mu      sync.Mutex
	held    map[string][]*heldLock // name -> locks this Store holds (normally one)
	orphans []*heldLock            // lock znodes a failed delete left behind
}

var _ gobreaker.SharedDataStore = (*Store)(nil)

// New returns a Store that keeps its data under cfg.Root through c. It does
// no I/O: the session is opened by the first Lock.
func New(c *client.Client, cfg Config) (*Store, error) {
	if c == nil {
		return nil, errors.New("gobreakerstore: nil client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Store{
		c:    c,
		cfg:  cfg,
		log:  cfg.Logger,
		held: make(map[string][]*heldLock),
	}, nil
}

// Close closes the Store's session, which releases every lock it holds and
// makes pending Lock calls fail, and waits for its background goroutine.
// Later calls of any method return ErrClosed. Close does not close the
// Client. Calls after the first return nil.
func (s *Store) Close() error {
	s.sessMu.Lock()
	if s.closed.Swap(true) {
		s.sessMu.Unlock()
		return nil
	}
	cur := s.sess
	s.sess = nil
	s.sessMu.Unlock()

	var err error
	if cur != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		if e := cur.s.Close(ctx); e != nil {
			err = fmt.Errorf("gobreakerstore: close session %d: %w", cur.s.ID(), e)
		}
		cancel()
	}
	s.wg.Wait()
	return err
}

// GetData returns the data last stored for name by SetData, or nil (and no
// error) if there is none.
func (s *Store) GetData(name string) ([]byte, error) {
	p, err := s.statePath(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	data, _, err := s.c.Get(ctx, p)
	switch {
	case errors.Is(err, client.ErrNoNode):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("gobreakerstore: get data %q: %w", name, err)
	}
	return data, nil
}

// SetData stores data for name, replacing whatever was there (last writer
// wins; gobreaker calls it while holding the name's lock).
func (s *Store) SetData(name string, data []byte) error {
	p, err := s.statePath(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	if err := s.setData(ctx, p, data); err != nil {
		return fmt.Errorf("gobreakerstore: set data %q: %w", name, err)
	}
	return nil
}

// setData sets the znode at p, creating it (and its parents) if needed.
func (s *Store) setData(ctx context.Context, p string, data []byte) error {
	_, err := s.c.Set(ctx, p, data, client.AnyVersion)
	if !errors.Is(err, client.ErrNoNode) {
		return err
	}
	if err := s.ensure(ctx, parent(p)); err != nil {
		return err
	}
	_, _, err = s.c.Create(ctx, p, data)
	if errors.Is(err, client.ErrNodeExists) { // another writer created it first
		_, err = s.c.Set(ctx, p, data, client.AnyVersion)
	}
	return err
}

// ensure creates the persistent znode p and any missing ancestors.
func (s *Store) ensure(ctx context.Context, p string) error {
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		_, _, err := s.c.Create(ctx, p[:i], nil)
		if err != nil && !errors.Is(err, client.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", p[:i], err)
		}
	}
	return nil
}

func parent(p string) string { return p[:strings.LastIndexByte(p, '/')] }

// statePath returns the path of name's data znode.
func (s *Store) statePath(name string) (string, error) {
	dir, err := s.dir(name)
	if err != nil {
		return "", err
	}
	return dir + "/state", nil
}

// dir returns name's directory under the root, or ErrClosed.
func (s *Store) dir(name string) (string, error) {
	if s.closed.Load() {
		return "", ErrClosed
	}
	seg, err := segment(name)
	if err != nil {
		return "", err
	}
	if n := len(s.cfg.Root) + 1 + len(seg) + maxSuffixBytes; n > ztree.MaxPathBytes {
		return "", fmt.Errorf("%w: %q escapes to %d bytes, which makes paths longer than the coordinator's %d-byte limit", ErrInvalidName, name, len(seg), ztree.MaxPathBytes)
	}
	return s.cfg.Root + "/" + seg, nil
}

// segment returns the znode name (one path segment) that the Store uses for
// name: name escaped with url.PathEscape, and with the dots of "." and ".."
// escaped too. An empty name is ErrInvalidName.
func segment(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidName)
	}
	seg := url.PathEscape(name)
	if seg == "." || seg == ".." {
		seg = strings.ReplaceAll(seg, ".", "%2E")
	}
	return seg, nil
}
