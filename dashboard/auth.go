package dashboard

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/colonymesh/colony/internal/trust"
)

// ReadMode says who may read the dashboard (its API and live feed).
type ReadMode string

const (
	// ReadAnyone lets anyone who passes the Host check read; only
	// operators act.
	ReadAnyone ReadMode = "anyone"
	// ReadAuthenticated refuses (401) every API request without a
	// credential: a verified client certificate of any role, a token or a
	// trusted proxy's user. The page itself, /api/me and /api/login stay
	// open so that a browser can log in.
	ReadAuthenticated ReadMode = "authenticated"
)

// Token is one bearer token that makes its holder an operator, recorded
// as "token:<Name>".
type Token struct {
	// Name names the holder in the audit trail.
	Name string
	// Secret is the token itself: at least MinTokenLen bytes.
	Secret string
}

// MinTokenLen is the shortest token accepted: 16 bytes, 128 bits of
// entropy when random hex or base64 of 12+ random bytes.
const MinTokenLen = 16

// maxProxyUser bounds the user name a trusted proxy may assert.
const maxProxyUser = 128

// defaultProxyHeader is the header authenticating proxies commonly set:
// when no proxy is trusted, its presence is logged (and ignored).
const defaultProxyHeader = "X-Forwarded-User"

// sessionCookie is the login cookie's name.
const sessionCookie = "colony_dashboard"

// LoadTokens reads a token file: one token a line, as NAME:SECRET (the
// holder is recorded as token:NAME), or only SECRET (recorded as
// token:operator). Blank lines and lines starting with # are ignored.
func LoadTokens(path string) ([]Token, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dashboard: token file: %w", err)
	}
	var tokens []Token
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t := Token{Name: "operator", Secret: line}
		if name, secret, ok := strings.Cut(line, ":"); ok {
			t = Token{Name: strings.TrimSpace(name), Secret: strings.TrimSpace(secret)}
		}
		if err := t.validate(); err != nil {
			return nil, fmt.Errorf("dashboard: token file %s line %d: %w", path, n, err)
		}
		tokens = append(tokens, t)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("dashboard: token file %s holds no token", path)
	}
	return tokens, nil
}

func (t Token) validate() error {
	if err := trust.CheckName("token name", t.Name); err != nil {
		return err
	}
	if len(t.Secret) < MinTokenLen {
		return fmt.Errorf("token %s: %d bytes, want at least %d", t.Name, len(t.Secret), MinTokenLen)
	}
	return nil
}

// NewTokenSecret returns a random token secret (32 hex digits).
func NewTokenSecret() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// principal is who a request comes from, as the dashboard verified it.
type principal struct {
	// ID names it in the audit trail; empty for anonymous.
	ID string
	// Via says how it was authenticated: certificate, token, proxy, or
	// anonymous.
	Via string
	// Operator: it may act (overrides).
	Operator bool
	// Key bounds its live streams: ID, or the remote IP for anonymous.
	Key string
}

func (p principal) authenticated() bool { return p.ID != "" }

type principalKey struct{}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// remoteIP is the TCP peer's address, unmapped.
func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// authenticator turns a request's credentials into a principal.
type authenticator struct {
	d       *Dashboard
	tokens  []tokenHash
	macKey  []byte
	proxies []netip.Prefix
	header  string
	td      string
	ttl     time.Duration
	now     func() time.Time
}

// tokenHash keeps a token's SHA-256: comparing digests of equal length in
// constant time leaks neither the token nor its length.
type tokenHash struct {
	name string
	sum  [32]byte
}

func newAuthenticator(d *Dashboard, cfg Config) *authenticator {
	a := &authenticator{d: d, proxies: cfg.TrustedProxies, header: cfg.TrustedProxyHeader, ttl: cfg.SessionTTL, now: time.Now}
	for _, t := range cfg.Tokens {
		a.tokens = append(a.tokens, tokenHash{name: t.Name, sum: sha256.Sum256([]byte(t.Secret))})
	}
	a.macKey = make([]byte, 32)
	rand.Read(a.macKey)
	if cfg.TLS != nil {
		a.td = cfg.TLS.TrustDomain()
	}
	return a
}

// tokenName returns the name of the token secret matches, comparing with
// every token in constant time.
func (a *authenticator) tokenName(secret string) (string, bool) {
	sum := sha256.Sum256([]byte(secret))
	name, found := "", false
	for _, t := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 && !found {
			name, found = t.name, true
		}
	}
	return name, found
}

func (a *authenticator) trustedPeer(ip netip.Addr) bool {
	for _, p := range a.proxies {
		if ip.IsValid() && p.Contains(ip) {
			return true
		}
	}
	return false
}

// validProxyUser checks a user name a trusted proxy asserts.
func validProxyUser(u string) error {
	if len(u) > maxProxyUser || !utf8.ValidString(u) {
		return fmt.Errorf("want at most %d bytes of UTF-8", maxProxyUser)
	}
	for _, c := range u {
		if unicode.IsControl(c) {
			return errors.New("control characters")
		}
	}
	return nil
}

// principal authenticates r: a trusted proxy's user header first (only
// when the TCP peer is a trusted proxy), then a verified client
// certificate, then a bearer token, then the login cookie. A header from
// anyone else is ignored and logged. err is a credential that was
// presented and is wrong (a bad token): the request is refused.
func (a *authenticator) principal(r *http.Request) (principal, error) {
	ip := remoteIP(r)
	anon := principal{Via: "anonymous", Key: "ip:" + ip.String()}
	if a.d.cfg.AnonymousOperators {
		anon = principal{ID: "anonymous@" + ip.String(), Via: "anonymous", Operator: true, Key: "ip:" + ip.String()}
	}
	if a.header == "" {
		if u := r.Header.Get(defaultProxyHeader); u != "" {
			a.d.log.Warn("ignoring a user header: no trusted proxy is configured",
				"header", defaultProxyHeader, "value", truncate(u, 64), "peer", ip.String(), "path", r.URL.Path)
		}
	} else {
		if u := strings.TrimSpace(r.Header.Get(a.header)); u != "" {
			if !a.trustedPeer(ip) {
				a.d.log.Warn("ignoring a user header from a peer that is not a trusted proxy",
					"header", a.header, "value", truncate(u, 64), "peer", ip.String(), "path", r.URL.Path)
			} else {
				if err := validProxyUser(u); err != nil {
					return principal{}, &badInput{a.header, err}
				}
				id := "proxy:" + u + " via " + ip.String()
				return principal{ID: id, Via: "proxy", Operator: true, Key: id}, nil
			}
		}
	}
	if id, ok := trust.FromConnectionState(r.TLS, a.trustDomain()); ok {
		op := id.Role == trust.RoleOperator || id.Role == trust.RoleAdmin
		return principal{ID: id.ID, Via: "certificate", Operator: op, Key: id.ID}, nil
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return principal{}, &authError{code: http.StatusUnauthorized, field: "Authorization", msg: "want Authorization: Bearer <token>"}
		}
		name, ok := a.tokenName(strings.TrimSpace(secret))
		if !ok {
			return principal{}, &authError{code: http.StatusUnauthorized, field: "Authorization", msg: "the bearer token matches no token of this dashboard"}
		}
		id := "token:" + name
		return principal{ID: id, Via: "token", Operator: true, Key: id}, nil
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if name, ok := a.verifySession(c.Value); ok {
			id := "token:" + name
			return principal{ID: id, Via: "token", Operator: true, Key: id}, nil
		}
		// An expired or foreign cookie: anonymous (the page offers a login).
	}
	return anon, nil
}

func (a *authenticator) trustDomain() string {
	if a.td == "" {
		return trust.DefaultTrustDomain
	}
	return a.td
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// sessionMAC signs a login cookie's name and expiry, bound to the token's
// digest so that a changed token ends its sessions.
func (a *authenticator) sessionMAC(name string, exp int64) []byte {
	var sum [32]byte
	for _, t := range a.tokens {
		if t.name == name {
			sum = t.sum
			break
		}
	}
	m := hmac.New(sha256.New, a.macKey)
	fmt.Fprintf(m, "%s\x00%d\x00", name, exp)
	m.Write(sum[:])
	return m.Sum(nil)
}

// newSession is a login cookie's value: name.expiry.mac.
func (a *authenticator) newSession(name string) (string, time.Time) {
	exp := a.now().Add(a.ttl)
	mac := a.sessionMAC(name, exp.Unix())
	return base64.RawURLEncoding.EncodeToString([]byte(name)) + "." + strconv.FormatInt(exp.Unix(), 10) + "." +
		base64.RawURLEncoding.EncodeToString(mac), exp
}

func (a *authenticator) verifySession(v string) (string, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return "", false
	}
	nameB, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	exp, err2 := strconv.ParseInt(parts[1], 10, 64)
	mac, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return "", false
	}
	name := string(nameB)
	if !hmac.Equal(mac, a.sessionMAC(name, exp)) || a.now().Unix() >= exp {
		return "", false
	}
	for _, t := range a.tokens {
		if t.name == name {
			return name, true
		}
	}
	return "", false
}

// authError is a refusal by the dashboard's own checks.
type authError struct {
	code  int
	field string
	msg   string
}

func (e *authError) Error() string { return e.msg }

// normHost lower-cases a host name and drops a port, brackets and a
// trailing dot.
func normHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// hostPort is host:port with the scheme's default port filled in.
func hostPort(hostport, scheme string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.ToLower(hostport)
	}
	port := "80"
	if scheme == "https" {
		port = "443"
	}
	return strings.ToLower(net.JoinHostPort(strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), port))
}

// hostAllowed reports whether a Host (or Origin host) names this dashboard.
func (d *Dashboard) hostAllowed(h string) bool {
	_, ok := d.hosts[normHost(h)]
	return h != "" && ok
}

// originAllowed reports whether a request's Origin is the dashboard's own:
// the same host and port as the request's Host, which must be an allowed
// name, or one of AllowedOrigins.
func (d *Dashboard) originAllowed(origin string, r *http.Request) bool {
	if _, ok := d.origins[strings.ToLower(strings.TrimSuffix(origin, "/"))]; ok {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
		return false
	}
	reqScheme := "http"
	if r.TLS != nil {
		reqScheme = "https"
	}
	return d.hostAllowed(u.Host) && hostPort(u.Host, u.Scheme) == hostPort(r.Host, reqScheme)
}

// safeMethod: the methods that never act.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// openToAnyone are what a browser needs before it has logged in.
func openToAnyone(r *http.Request) bool {
	p := r.URL.Path
	return !strings.HasPrefix(p, "/api/") || p == "/api/me" || p == "/api/login" || p == "/api/logout"
}

// guard is the one place requests are authenticated and authorized: the
// Host, then the Origin of anything that acts (and of the live stream),
// then who the request comes from, then whether that may read or act.
func (d *Dashboard) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.hostAllowed(r.Host) {
			// The allowed names go to the log, not to the (possibly
			// rebinding) client.
			d.log.Warn("refused a request for a host this dashboard does not serve", "host", truncate(r.Host, 64), "peer", r.RemoteAddr, "allowed", d.hostList)
			writeError(w, http.StatusMisdirectedRequest, "Host", fmt.Sprintf("Host: %q is not a name of this dashboard (its operator lists the names it answers to)", truncate(r.Host, 64)))
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && (!safeMethod(r.Method) || r.URL.Path == "/api/events") && !d.originAllowed(origin, r) {
			d.log.Warn("refused a request from a foreign origin", "origin", truncate(origin, 64), "path", r.URL.Path, "peer", r.RemoteAddr)
			writeError(w, http.StatusForbidden, "Origin", fmt.Sprintf("Origin: %q is not this dashboard's origin", truncate(origin, 64)))
			return
		}
		p, err := d.auth.principal(r)
		if err != nil {
			var ae *authError
			if errors.As(err, &ae) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="colony"`)
				writeError(w, ae.code, ae.field, ae.field+": "+ae.msg)
				return
			}
			writeBad(w, http.StatusBadRequest, err)
			return
		}
		if d.cfg.Read == ReadAuthenticated && !p.authenticated() && !openToAnyone(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="colony"`)
			writeError(w, http.StatusUnauthorized, "Authorization", "Authorization: this dashboard is not open to anonymous readers: "+d.credentialsHelp())
			return
		}
		if !safeMethod(r.Method) && !p.Operator && r.URL.Path != "/api/login" && r.URL.Path != "/api/logout" {
			who := "an anonymous reader (" + remoteIP(r).String() + ")"
			if p.authenticated() {
				who = p.ID + ", who is not an operator"
			}
			writeError(w, http.StatusForbidden, "Authorization", fmt.Sprintf("Authorization: %s %s needs an operator; you are %s. %s", r.Method, r.URL.Path, who, d.credentialsHelp()))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// credentialsHelp names the credentials this dashboard accepts.
func (d *Dashboard) credentialsHelp() string {
	var ways []string
	if d.cfg.TLS != nil {
		ways = append(ways, "a client certificate with role operator or admin")
	}
	if len(d.cfg.Tokens) > 0 {
		ways = append(ways, "a token (Authorization: Bearer, or log in)")
	}
	if d.cfg.TrustedProxyHeader != "" && len(d.cfg.TrustedProxies) > 0 {
		ways = append(ways, "a user named in "+d.cfg.TrustedProxyHeader+" by a trusted proxy")
	}
	if len(ways) == 0 {
		return "This dashboard accepts no operator credential (no TLS, tokens or trusted proxy are configured): it is read-only."
	}
	return "Operators present " + strings.Join(ways, ", or ") + "."
}

// loginRequest is POST /api/login's body.
type loginRequest struct {
	Token string `json:"token"`
}

// POST /api/login: exchange a token for an HttpOnly, Secure,
// SameSite=Strict session cookie.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if code, err := decodeJSON(w, r, &req); err != nil {
		writeBad(w, code, err)
		return
	}
	if len(d.auth.tokens) == 0 {
		writeError(w, http.StatusNotFound, "token", "token: this dashboard has no tokens to log in with")
		return
	}
	name, ok := d.auth.tokenName(strings.TrimSpace(req.Token))
	if !ok {
		d.log.Warn("failed dashboard login", "peer", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "token", "token: matches no token of this dashboard")
		return
	}
	v, exp := d.auth.newSession(name)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: v, Path: "/", Expires: exp, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	d.log.Info("dashboard login", "by", "token:"+name, "peer", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"by": "token:" + name, "operator": true})
}

// POST /api/logout: drop the session cookie.
func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]any{})
}
