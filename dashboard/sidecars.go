package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/colonymesh/colony/contract"
	"github.com/colonymesh/colony/coordinator/client"
	"github.com/colonymesh/colony/internal/trust"
	colonyv1 "github.com/colonymesh/colony/proto/colony/v1"
)

// statusParallelism bounds the registry reads and sidecar Status calls one
// request makes at once.
const statusParallelism = 8

// sidecarInfo is one registered instance and, when its sidecar answered,
// the sidecar's status.
type sidecarInfo struct {
	Registration contract.Registration `json:"registration"`
	// Status is the sidecar's Status (protojson), absent when it could
	// not be asked or did not answer.
	Status json.RawMessage `json:"status,omitempty"`
	// Error says why Status is absent.
	Error string `json:"error,omitempty"`
	// status is Status decoded, for the enforcement view.
	status *colonyv1.SidecarStatusResponse
}

// registry reads the registered instances (of one service, or all), at
// most limit of them; truncated says more were left out.
func registry(ctx context.Context, c Coordinator, service string, limit int) (regs []contract.Registration, truncated bool, err error) {
	var services []string
	if service != "" {
		services = []string{service}
	} else if services, _, err = c.Children(ctx, contract.ServicesRoot, client.WithSessionConsistency()); errors.Is(err, client.ErrNoNode) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, fmt.Errorf("listing %s: %w", contract.ServicesRoot, err)
	}
	var paths []string
	for _, svc := range services {
		p := contract.ServiceDir(svc)
		instances, _, err := c.Children(ctx, p, client.WithSessionConsistency())
		if errors.Is(err, client.ErrNoNode) {
			continue // gone since the listing
		}
		if err != nil {
			return nil, false, fmt.Errorf("listing %s: %w", p, err)
		}
		for _, inst := range instances {
			if len(paths) == limit {
				truncated = true
				break
			}
			paths = append(paths, path.Join(p, inst))
		}
	}
	regs = make([]contract.Registration, len(paths))
	ok := make([]bool, len(paths))
	errs := make([]error, len(paths))
	parallel(len(paths), func(i int) {
		data, _, err := c.Get(ctx, paths[i], client.WithSessionConsistency())
		if errors.Is(err, client.ErrNoNode) {
			return // the instance went away
		}
		if err != nil {
			errs[i] = fmt.Errorf("reading %s: %w", paths[i], err)
			return
		}
		if err := json.Unmarshal(data, &regs[i]); err != nil {
			// Show what the path names rather than hide the instance.
			regs[i] = contract.Registration{Service: path.Base(path.Dir(paths[i])), Instance: path.Base(paths[i])}
		}
		ok[i] = true
	})
	if err := errors.Join(errs...); err != nil {
		return nil, false, err
	}
	out := regs[:0]
	for i, r := range regs {
		if ok[i] {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Instance < out[j].Instance
	})
	return out, truncated, nil
}

// parallel runs f(0..n-1), at most statusParallelism at once.
func parallel(n int, f func(i int)) {
	sem := make(chan struct{}, statusParallelism)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}

// sidecarStatus asks the sidecar at addr for its Status, within timeout:
// with TLS when m is set, verifying the sidecar's certificate for addr's
// host and presenting the dashboard's own. A sidecar whose API listens on
// loopback may serve it in plaintext (colony sidecar's --listen-tls is off
// by default, and sidecars allow plaintext on loopback only): when TLS
// fails there, the dashboard asks again in plaintext, sending nothing but
// the request.
func sidecarStatus(ctx context.Context, addr string, m *trust.Material, timeout time.Duration) (*colonyv1.SidecarStatusResponse, error) {
	if m == nil {
		return sidecarStatusWith(ctx, addr, insecure.NewCredentials(), timeout)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sidecar address %q: %w", addr, err)
	}
	st, err := sidecarStatusWith(ctx, addr, credentials.NewTLS(m.ClientConfig(host)), timeout)
	if err != nil && ctx.Err() == nil && isLoopback(host) {
		if plain, perr := sidecarStatusWith(ctx, addr, insecure.NewCredentials(), timeout); perr == nil {
			return plain, nil
		}
	}
	return st, err
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func sidecarStatusWith(ctx context.Context, addr string, creds credentials.TransportCredentials, timeout time.Duration) (*colonyv1.SidecarStatusResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return colonyv1.NewSidecarClient(conn).Status(ctx, &colonyv1.SidecarStatusRequest{})
}

// sidecarInfos reads the registry (one service's, or all) and asks each
// registered sidecar for its status.
func (d *Dashboard) sidecarInfos(ctx context.Context, service string) ([]sidecarInfo, bool, error) {
	rctx, cancel := context.WithTimeout(ctx, d.cfg.RequestTimeout)
	regs, truncated, err := registry(rctx, d.coord, service, d.cfg.MaxSidecars)
	cancel()
	if err != nil {
		return nil, false, err
	}
	infos := make([]sidecarInfo, len(regs))
	parallel(len(regs), func(i int) {
		in := &infos[i]
		in.Registration = regs[i]
		if regs[i].Sidecar == "" {
			in.Error = "the registration names no sidecar address"
			return
		}
		st, err := sidecarStatus(ctx, regs[i].Sidecar, d.cfg.TLS, d.cfg.SidecarTimeout)
		if err != nil {
			in.Error = fmt.Sprintf("sidecar %s did not answer within %v: %v", regs[i].Sidecar, d.cfg.SidecarTimeout, err)
			return
		}
		b, err := protoJSON.Marshal(st)
		if err != nil {
			in.Error = err.Error()
			return
		}
		in.Status, in.status = b, st
	})
	return infos, truncated, nil
}

// GET /api/sidecars: every registered instance and its sidecar's status.
func (d *Dashboard) sidecars(w http.ResponseWriter, r *http.Request) {
	infos, truncated, err := d.sidecarInfos(r.Context(), "")
	if err != nil {
		writeCoordError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sidecars":         infos,
		"truncated":        truncated,
		"limit":            d.cfg.MaxSidecars,
		"sidecarTimeoutMs": d.cfg.SidecarTimeout.Milliseconds(),
	})
}

// enforcementNote says what the enforcement view shows.
const enforcementNote = "From each caller sidecar's Status: the state it enforces, how long after the leader's " +
	"transition it learned the record, and for each data-plane client (Envoy or proxyless gRPC process) the newest " +
	"generation it ACKed and its trip-to-enforce: the ACK minus the leader's decision, across the leader's and the " +
	"sidecar's clocks. A generation found at start (initial) measures nothing."

// clientEnforcement is one data-plane client's newest enforcement of the
// pair, as its sidecar measured it.
type clientEnforcement struct {
	Client     string `json:"client"`
	Generation uint64 `json:"generation"`
	State      string `json:"state"`
	AtMs       int64  `json:"atMs"`
	// TripToEnforceMs is the ACK minus the leader's decision; FromSeenMs the
	// ACK minus when the sidecar learned it.
	TripToEnforceMs float64 `json:"tripToEnforceMs"`
	FromSeenMs      float64 `json:"fromSeenMs"`
	Initial         bool    `json:"initial"`
}

// newestPerClient keeps, for each client, its newest enforcement of callee.
func newestPerClient(list []*colonyv1.Enforcement, callee string) []clientEnforcement {
	out := []clientEnforcement{}
	at := map[string]int{}
	for _, e := range list {
		if e.GetCallee() != callee {
			continue
		}
		c := clientEnforcement{Client: e.GetClient(), Generation: e.GetGeneration(), State: e.GetState(), AtMs: e.GetAtMs(),
			TripToEnforceMs: float64(e.GetFromLeaderUs()) / 1000, FromSeenMs: float64(e.GetFromSeenUs()) / 1000, Initial: e.GetInitial()}
		i, seen := at[c.Client]
		switch {
		case !seen:
			at[c.Client] = len(out)
			out = append(out, c)
		case c.Generation >= out[i].Generation:
			out[i] = c
		}
	}
	return out
}

// pairEnforcement is one caller sidecar's view of the pair.
type pairEnforcement struct {
	Instance string `json:"instance"`
	Sidecar  string `json:"sidecar"`
	Mode     string `json:"mode,omitempty"`
	Degraded bool   `json:"degraded"`
	StaleMs  int64  `json:"staleMs"`
	// Pair is the sidecar's PairStatus for the callee (protojson), absent
	// when it does not enforce the pair.
	Pair json.RawMessage `json:"pair,omitempty"`
	// LearnedAfterMs is Pair's seen_ms - since_ms: how long after the
	// leader's transition the sidecar had the record.
	LearnedAfterMs *int64 `json:"learnedAfterMs,omitempty"`
	// Enforcers is the sidecar's description of its data planes; the last
	// xDS enforcement latency is in it, as text.
	Enforcers []string `json:"enforcers"`
	// Clients is each data-plane client's newest enforcement of the pair.
	Clients []clientEnforcement `json:"clients"`
	Error   string              `json:"error,omitempty"`
}

// GET /api/breakers/{caller}/{callee}/enforcement: how the caller's sidecars
// enforce the pair.
func (d *Dashboard) enforcement(w http.ResponseWriter, r *http.Request) {
	caller, callee, err := pairParams(r)
	if err != nil {
		writeBad(w, http.StatusBadRequest, err)
		return
	}
	infos, truncated, err := d.sidecarInfos(r.Context(), caller)
	if err != nil {
		writeCoordError(w, err)
		return
	}
	out := make([]pairEnforcement, 0, len(infos))
	for _, in := range infos {
		e := pairEnforcement{Instance: in.Registration.Instance, Sidecar: in.Registration.Sidecar, Error: in.Error,
			Enforcers: []string{}, Clients: []clientEnforcement{}}
		if st := in.status; st != nil {
			e.Clients = newestPerClient(st.GetEnforcements(), callee)
			e.Mode, e.Degraded, e.StaleMs = st.GetMode(), st.GetDegraded(), st.GetStaleMs()
			if st.GetEnforcers() != nil {
				e.Enforcers = st.GetEnforcers()
			}
			for _, p := range st.GetPairs() {
				if p.GetCallee() != callee {
					continue
				}
				if b, err := protoJSON.Marshal(p); err == nil {
					e.Pair = b
				}
				if p.GetSeenMs() > 0 && p.GetSinceMs() > 0 {
					lag := p.GetSeenMs() - p.GetSinceMs()
					e.LearnedAfterMs = &lag
				}
			}
		}
		out = append(out, e)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"caller":    caller,
		"callee":    callee,
		"sidecars":  out,
		"truncated": truncated,
		"note":      enforcementNote,
	})
}
