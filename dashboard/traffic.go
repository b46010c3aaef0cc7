package dashboard

import (
	"math"
	"net/http"
)

// The traffic history behind the page's sparklines: the hub keeps the
// newest historyLen polls of every pair's live window (one poll every
// PollInterval, only while a browser is connected), sends them to a browser
// when it connects (the history event) and serves them at /api/traffic.
// Each later snapshot is one more sample, which the page appends itself.

// historyLen is how many polls the history keeps: two minutes at the
// default 2s PollInterval.
const historyLen = 60

// trafficHistory is the history event's body and GET /api/traffic's.
type trafficHistory struct {
	// StepMs is the poll interval the samples were taken at.
	StepMs int64 `json:"stepMs"`
	// AtMs are the polls' times, oldest first.
	AtMs []int64 `json:"atMs"`
	// Pairs are "caller/callee" -> the pair's series, aligned with AtMs
	// (null where a poll did not list the pair).
	Pairs map[string]*pairSeries `json:"pairs"`
}

// pairSeries is one pair's samples.
type pairSeries struct {
	CallRate     []*float64 `json:"callRate"`     // calls/s
	FailureRate  []*float64 `json:"failureRate"`  // 0..1
	SlowCallRate []*float64 `json:"slowCallRate"` // 0..1
	RejectRate   []*float64 `json:"rejectRate"`   // rejected calls/s
	// P99Ms is the p99 latency in ms (its bucket's upper bound; -1 past the
	// last bound), null where the window had no latency samples.
	P99Ms []*float64 `json:"p99Ms"`
}

// trafficPoll is one poll's windows, by "caller/callee".
type trafficPoll struct {
	atMs    int64
	windows map[string]pairWindow
}

// recordPollLocked adds a poll to the history, dropping the oldest past
// historyLen, and the whole history when polling paused (no browser was
// connected) for long enough that the sparklines would join across a gap.
func (h *hub) recordPollLocked(l breakerList) {
	if n := len(h.polls); n > 0 && l.AtMs-h.polls[n-1].atMs > 3*h.poll.Milliseconds() {
		h.polls = h.polls[:0]
	}
	p := trafficPoll{atMs: l.AtMs, windows: make(map[string]pairWindow, len(l.Breakers))}
	for _, b := range l.Breakers {
		if b.Window != nil {
			p.windows[b.Caller+"/"+b.Callee] = *b.Window
		}
	}
	if len(h.polls) == historyLen {
		copy(h.polls, h.polls[1:])
		h.polls = h.polls[:historyLen-1]
	}
	h.polls = append(h.polls, p)
}

// historyLocked builds the history of the pairs the newest poll listed.
func (h *hub) historyLocked() trafficHistory {
	th := trafficHistory{StepMs: h.poll.Milliseconds(), AtMs: make([]int64, len(h.polls)), Pairs: map[string]*pairSeries{}}
	if len(h.polls) == 0 {
		return th
	}
	for k := range h.polls[len(h.polls)-1].windows {
		n := len(h.polls)
		th.Pairs[k] = &pairSeries{CallRate: make([]*float64, n), FailureRate: make([]*float64, n),
			SlowCallRate: make([]*float64, n), RejectRate: make([]*float64, n), P99Ms: make([]*float64, n)}
	}
	for i, p := range h.polls {
		th.AtMs[i] = p.atMs
		for k, s := range th.Pairs {
			w, ok := p.windows[k]
			if !ok {
				continue
			}
			s.CallRate[i] = round(w.CallRate, 100)
			s.FailureRate[i] = round(w.FailureRate, 10000)
			s.SlowCallRate[i] = round(w.SlowCallRate, 10000)
			s.RejectRate[i] = round(w.RejectRate, 100)
			if w.LatencySamples > 0 {
				s.P99Ms[i] = round(float64(w.P99Ms), 1)
			}
		}
	}
	return th
}

// round keeps a sample short on the wire.
func round(v, scale float64) *float64 {
	r := math.Round(v*scale) / scale
	return &r
}

// GET /api/traffic: the live windows' recent history, as the history event
// sends it. Empty until a browser has followed the live feed: the windows
// are read only while one does.
func (d *Dashboard) traffic(w http.ResponseWriter, r *http.Request) {
	d.hub.mu.Lock()
	th := d.hub.historyLocked()
	d.hub.mu.Unlock()
	writeJSON(w, http.StatusOK, th)
}
