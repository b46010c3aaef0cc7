// Command locks shows Colony's locks with fencing tokens. Workers take one
// lock in turn and, while they hold it, do a read-modify-write of a counter
// kept by a separate resource. Every request to the resource carries the
// holder's fencing token, and the resource rejects a token lower than one it
// has already seen: a worker that lost the lock without knowing it (it paused
// past its session's TTL) cannot overwrite the work of the next holder.
//
// A worker takes the lock one of two ways:
//
//   - --via go: with package recipe (recipe.NewMutex on a coordinator
//     session), as a Go program linking Colony's client does;
//   - --via sidecar: through the local sidecar's colony.v1.Locks gRPC API
//     (proto/colony/v1/sidecar.proto), as a program in any language does
//     with the generated stubs. The sidecar runs the same recipe, so both
//     kinds of workers contend for the same lock.
//
// Run:
//
//	go run ./examples/locks resource --listen 127.0.0.1:9400
//	go run ./examples/locks worker --via go --id w1
//	go run ./examples/locks worker --via sidecar --sidecar 127.0.0.1:7530 --id w2
//
// README.md beside this file walks through it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/colonymesh/colony/coordinator/client"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
	"github.com/colonymesh/colony/recipe"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: locks resource|worker [flags]")
		os.Exit(2)
	}
	// SIGINT or SIGTERM cancels ctx: a worker stops after releasing the
	// lock, the resource after its requests in flight.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	var err error
	switch os.Args[1] {
	case "resource":
		err = resourceCmd(ctx, os.Args[2:], logger)
	case "worker":
		err = workerCmd(ctx, os.Args[2:], logger)
	default:
		err = fmt.Errorf("unknown command %q (want resource or worker)", os.Args[1])
	}
	if err != nil {
		logger.Fatal(err)
	}
}

// TokenHeader carries the holder's fencing token on every request to the
// resource (COLONY_FENCING_TOKEN in a command run by `colony lock`).
const TokenHeader = "Fencing-Token"

// WorkerHeader names the worker, for the resource's log.
const WorkerHeader = "Worker"

// errStaleToken is the resource's answer (409) to a token lower than one it
// has seen.
var errStaleToken = errors.New("resource: stale fencing token")

// resource is the protected resource: a counter, read with GET /counter and
// written with PUT /counter, each with the holder's token. It admits a
// request only if its token is at least the highest it has admitted
// (recipe.Fence). The check and the read or write are one step under one
// mutex: checked apart, a lower token could be admitted, then a higher one
// admitted and written, and then the lower one written over it. A database
// does the same in one statement:
//
//	UPDATE counters SET value = $1, fence = $2 WHERE name = 'counter' AND fence <= $2
//
// (no row updated: a stale holder).
type resource struct {
	logger *log.Logger

	mu      sync.Mutex
	fence   recipe.Fence
	value   int64
	history []op // admitted and rejected requests, oldest first (the last maxHistory)
}

// op is one request as the resource saw it.
type op struct {
	Method   string // GET or PUT
	Token    recipe.Token
	Worker   string
	Value    int64 // read or written
	Rejected bool  // stale token
}

const maxHistory = 10000

func (r *resource) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/counter" || (req.Method != http.MethodGet && req.Method != http.MethodPut) {
		http.Error(w, "want GET or PUT /counter", http.StatusNotFound)
		return
	}
	token, err := recipe.ParseToken(req.Header.Get(TokenHeader))
	if err != nil {
		http.Error(w, TokenHeader+": "+err.Error(), http.StatusBadRequest)
		return
	}
	var value int64
	if req.Method == http.MethodPut {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 64))
		if value, err = strconv.ParseInt(strings.TrimSpace(string(body)), 10, 64); err != nil {
			http.Error(w, "body: want the counter's new value, a decimal integer", http.StatusBadRequest)
			return
		}
	}
	o := op{Method: req.Method, Token: token, Worker: req.Header.Get(WorkerHeader)}

	r.mu.Lock()
	if err := r.fence.Admit(token); err != nil {
		o.Rejected, o.Value = true, value
		r.record(o)
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	if req.Method == http.MethodPut {
		r.value = value
	}
	o.Value = r.value
	r.record(o)
	r.mu.Unlock()
	fmt.Fprintln(w, o.Value)
}

// record appends to the history and prints the request (under mu).
func (r *resource) record(o op) {
	if len(r.history) == maxHistory {
		r.history = append(r.history[:0], r.history[1:]...)
	}
	r.history = append(r.history, o)
	verdict := ""
	if o.Rejected {
		verdict = fmt.Sprintf("  REJECTED: token below %d", r.fence.Highest())
	}
	r.logger.Printf("resource: %-3s counter=%d  token %d (%s)%s", o.Method, o.Value, o.Token, o.Worker, verdict)
}

// History returns the requests the resource saw, oldest first.
func (r *resource) History() []op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]op(nil), r.history...)
}

func resourceCmd(ctx context.Context, args []string, logger *log.Logger) error {
	fs := flag.NewFlagSet("resource", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9400", "HTTP address of the counter (GET and PUT /counter)")
	fs.Parse(args)
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	logger.Printf("resource: counter on http://%s/counter, fenced by the %s header", lis.Addr(), TokenHeader)
	return serveResource(ctx, &resource{logger: logger}, lis)
}

// serveResource serves r on lis until ctx ends.
func serveResource(ctx context.Context, r *resource, lis net.Listener) error {
	srv := &http.Server{Handler: r}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx) // stop accepting, let requests in flight finish
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// resourceClient makes a worker's fenced requests.
type resourceClient struct {
	url    string // http://host:port/counter
	worker string
	http   *http.Client
}

// get reads the counter with the holder's token.
func (c *resourceClient) get(ctx context.Context, token recipe.Token) (int64, error) {
	return c.do(ctx, http.MethodGet, token, "")
}

// put writes the counter with the holder's token.
func (c *resourceClient) put(ctx context.Context, token recipe.Token, value int64) error {
	_, err := c.do(ctx, http.MethodPut, token, strconv.FormatInt(value, 10))
	return err
}

func (c *resourceClient) do(ctx context.Context, method string, token recipe.Token, body string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set(TokenHeader, token.String())
	req.Header.Set(WorkerHeader, c.worker)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(b))
	switch resp.StatusCode {
	case http.StatusOK:
		return strconv.ParseInt(msg, 10, 64)
	case http.StatusConflict:
		return 0, fmt.Errorf("%w: %s", errStaleToken, msg)
	}
	return 0, fmt.Errorf("resource: %s %s: %s: %s", method, c.url, resp.Status, msg)
}

// locker takes the lock, blocking until it holds it or ctx ends.
type locker interface {
	Lock(ctx context.Context) (held, error)
}

// held is one holding of the lock.
type held struct {
	Token recipe.Token
	// Done is closed when the holding ends: released, or lost. Work done
	// under the lock stops then.
	Done <-chan struct{}
	// Unlock releases the lock.
	Unlock func(ctx context.Context) error
}

// recipeLocker takes the lock with package recipe, on a coordinator session
// of its own: what a Go program does.
type recipeLocker struct {
	sess *client.Session
	m    *recipe.Mutex
}

// newRecipeLocker opens a session (its TTL: how long the lock outlives this
// process if it dies or hangs) and a mutex on it. Close the locker.
func newRecipeLocker(ctx context.Context, c *client.Client, name, id string, ttl time.Duration) (*recipeLocker, error) {
	sess, err := c.OpenSession(ctx, ttl, "locks-example/"+id)
	if err != nil {
		return nil, fmt.Errorf("opening a session: %w", err)
	}
	m, err := recipe.NewMutex(c, sess, name)
	if err != nil {
		sess.Close(ctx)
		return nil, err
	}
	return &recipeLocker{sess: sess, m: m}, nil
}

func (l *recipeLocker) Lock(ctx context.Context) (held, error) {
	g, err := l.m.Lock(ctx)
	if err != nil {
		return held{}, err
	}
	// The token is the zxid at which the holder's lock node was created:
	// greater for every later holder, across sessions and coordinator
	// leader changes.
	return held{Token: g.Token(), Done: g.Done(), Unlock: l.m.Unlock}, nil
}

// Close closes the session, which releases the lock if it is still held.
func (l *recipeLocker) Close(ctx context.Context) error { return l.sess.Close(ctx) }

// sidecarLocker takes the lock through the sidecar's colony.v1.Locks API:
// a Hold stream holds the lock while it is open. This is all a program in
// another language needs: the generated Locks client and these messages.
type sidecarLocker struct {
	locks colonyv1.LocksClient
	name  string
	ttl   time.Duration // how long the lock outlives the sidecar
}

func (l *sidecarLocker) Lock(ctx context.Context) (held, error) {
	sctx, cancel := context.WithCancel(ctx) // ending the stream also releases
	stream, err := l.locks.Hold(sctx)
	if err != nil {
		cancel()
		return held{}, err
	}
	if err := stream.Send(&colonyv1.HoldRequest{Name: l.name, TtlMs: l.ttl.Milliseconds()}); err != nil {
		cancel()
		return held{}, err
	}
	granted, err := stream.Recv() // blocks until the lock is held
	if err != nil {
		cancel()
		return held{}, err
	}
	// The stream's next message is a loss (lost set, then ABORTED), or its
	// end after a release.
	done := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		defer close(done)
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	unlock := func(ctx context.Context) error {
		defer func() {
			cancel()
			<-done // the reader ends with the stream
		}()
		if err := stream.Send(&colonyv1.HoldRequest{Release: true}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		select {
		case err := <-ended:
			if errors.Is(err, io.EOF) {
				return nil // released
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return held{Token: recipe.Token(granted.GetToken()), Done: done, Unlock: unlock}, nil
}

// worker does rounds of fenced read-modify-write under the lock.
type worker struct {
	id     string
	lock   locker
	res    *resourceClient
	hold   time.Duration // time between the read and the write: the "work"
	logger *log.Logger
}

// errLost: the lock was lost while this worker worked under it.
var errLost = errors.New("lock lost during the round")

// round takes the lock, reads the counter, works, writes the counter plus
// one, and releases the lock. It returns the token it held.
func (w *worker) round(ctx context.Context) (recipe.Token, error) {
	h, err := w.lock.Lock(ctx)
	if err != nil {
		return 0, fmt.Errorf("taking the lock: %w", err)
	}
	// Release even when ctx has ended (a shutdown), with a bound of its own.
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := h.Unlock(uctx); err != nil {
			w.logger.Printf("%s: releasing the lock: %v", w.id, err)
		}
	}()
	v, err := w.res.get(ctx, h.Token)
	if err != nil {
		return h.Token, err
	}
	select {
	case <-time.After(w.hold):
	case <-h.Done:
		return h.Token, errLost
	case <-ctx.Done():
		return h.Token, ctx.Err()
	}
	if err := w.res.put(ctx, h.Token, v+1); err != nil {
		return h.Token, err
	}
	w.logger.Printf("%s: token %d: counter %d -> %d", w.id, h.Token, v, v+1)
	return h.Token, nil
}

// run does rounds until n are done (0: until ctx ends), returning the
// tokens it held. A stale token or a lost lock ends the round, not the run.
func (w *worker) run(ctx context.Context, n int) ([]recipe.Token, error) {
	var tokens []recipe.Token
	for i := 0; n == 0 || i < n; i++ {
		t, err := w.round(ctx)
		switch {
		case ctx.Err() != nil:
			return tokens, nil
		case errors.Is(err, errStaleToken), errors.Is(err, errLost):
			w.logger.Printf("%s: token %d: %v", w.id, t, err)
		case err != nil:
			return tokens, err
		}
		tokens = append(tokens, t)
	}
	return tokens, nil
}

func workerCmd(ctx context.Context, args []string, logger *log.Logger) error {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	via := fs.String("via", "go", "how to take the lock: go (package recipe) or sidecar (the colony.v1.Locks gRPC API)")
	coordinators := fs.String("coordinators", client.DefaultEndpoint, "coordinator gRPC addresses, comma-separated (--via go)")
	sidecarAddr := fs.String("sidecar", "127.0.0.1:7500", "the local sidecar's --listen (--via sidecar)")
	resourceURL := fs.String("resource", "http://127.0.0.1:9400/counter", "the resource's counter")
	name := fs.String("lock", "counter", "the lock's name")
	host, _ := os.Hostname()
	id := fs.String("id", fmt.Sprintf("%s-%d", host, os.Getpid()), "this worker's name, for the logs")
	rounds := fs.Int("rounds", 10, "rounds to do (0: until interrupted)")
	hold := fs.Duration("hold", 200*time.Millisecond, "work time under the lock, between the read and the write")
	ttl := fs.Duration("ttl", 10*time.Second, "how long the lock outlives this worker (--via go) or the sidecar (--via sidecar) if it dies")
	fs.Parse(args)

	w := &worker{id: *id, hold: *hold, logger: logger,
		res: &resourceClient{url: *resourceURL, worker: *id, http: &http.Client{Timeout: 5 * time.Second}}}
	switch *via {
	case "go":
		c, err := client.New(client.Config{Endpoints: strings.Split(*coordinators, ",")})
		if err != nil {
			return err
		}
		defer c.Close()
		l, err := newRecipeLocker(ctx, c, *name, *id, *ttl)
		if err != nil {
			return err
		}
		// Close the session before the client (defers run last-in first-out).
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			l.Close(cctx)
		}()
		w.lock = l
	case "sidecar":
		conn, err := grpc.NewClient(*sidecarAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		w.lock = &sidecarLocker{locks: colonyv1.NewLocksClient(conn), name: *name, ttl: *ttl}
	default:
		return fmt.Errorf("--via: want go or sidecar, got %q", *via)
	}
	logger.Printf("%s: %d rounds on lock %q via %s", *id, *rounds, *name, *via)
	tokens, err := w.run(ctx, *rounds)
	logger.Printf("%s: done, %d rounds, tokens %v", *id, len(tokens), tokens)
	return err
}
