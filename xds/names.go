package xds

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// Names proxyless clients dial. A gRPC client dialing xds:///<target> asks
// for the listener named <target>, exactly as written. The server serves
// every callee's own name and, on demand, these other names:
//
//   - <callee>:<port>, any port 1..65535 (a target written with the
//     callee's port: the endpoints come from the registry, the port in the
//     name is not used);
//   - any case of a callee's name, with or without a port: names match
//     case-insensitively when exactly one callee matches so (service names
//     may hold capitals: "Payments" and "payments" can both be served, and
//     then an exact name is needed).
//
// Any other name is answered at once with a listener the client must
// reject, whose error names what the server serves: the message the
// client's calls fail with. gRPC gives a control plane no other way to
// fail a name with words of its own (a response without the listener
// leaves the client waiting for its 15 s does-not-exist timer; so does
// go-control-plane's LinearCache, which answers a name it lacks with
// nothing). Such rejections are expected: they are not reported as NACKs.
//
// At most MaxAliases such names are materialised per server (the first
// ones asked for); beyond that, a name is left to gRPC's timer.

// MaxAliases bounds the listeners the server makes for names other than
// the callees' own (see above).
const MaxAliases = 256

// unknownNameMarker starts the message of the listener served for an
// unknown name; a NACK carrying it is expected.
const unknownNameMarker = "colony: no service"

// maxNameLen bounds a requested name the server materialises.
const maxNameLen = 512

// maxNamesListed bounds the served names an unknown-name message lists.
const maxNamesListed = 20

// resolveName returns the callee a requested listener name stands for
// among served (sorted), following the rules above.
func resolveName(name string, served []string) (string, bool) {
	host := name
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		p, err := strconv.Atoi(name[i+1:])
		if err != nil || p < 1 || p > 65535 || name[i+1] == '+' || name[i+1] == '-' {
			return "", false
		}
		host = name[:i]
	}
	if _, ok := slices.BinarySearch(served, host); ok {
		return host, true
	}
	match := ""
	for _, s := range served {
		if strings.EqualFold(s, host) {
			if match != "" {
				return "", false // ambiguous: only an exact name will do
			}
			match = s
		}
	}
	return match, match != ""
}

// aliasListener is the listener of name, which stands for callee: the
// callee's own listener under another name. Its route configuration is
// the callee's, whose virtual host matches any authority.
func aliasListener(name, callee string) (*listenerv3.Listener, error) {
	l, err := proxylessListener(callee)
	if err != nil {
		return nil, err
	}
	l.Name = name
	return l, nil
}

// unknownListener is the listener served for a name no callee has: its
// only HTTP filter is not a terminal one, so gRPC rejects it with an error
// that quotes the filter's name, which says what is served.
func unknownListener(name string, served []string) (*listenerv3.Listener, error) {
	list := served
	more := ""
	if len(list) > maxNamesListed {
		list, more = list[:maxNamesListed], fmt.Sprintf(" and %d more", len(served)-maxNamesListed)
	}
	what := "nothing yet"
	if len(list) > 0 {
		what = strings.Join(list, ", ") + more
	}
	msg := fmt.Sprintf("%s for xds:///%s; this sidecar serves xds:///<name> (also <name>:<port>, any case) for: %s", unknownNameMarker, name, what)
	fault, err := packValid("fault filter", &faultv3.HTTPFault{})
	if err != nil {
		return nil, err
	}
	hcm, err := packValid("connection manager of unknown name "+name, &hcmv3.HttpConnectionManager{
		StatPrefix: "unknown",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: msg, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: fault}}},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}, nil
}

// nameListener is the listener of a requested name that is not a callee's
// own: an alias or an unknown name.
func nameListener(name string, served []string) (*listenerv3.Listener, error) {
	if callee, ok := resolveName(name, served); ok {
		return aliasListener(name, callee)
	}
	return unknownListener(name, served)
}

// requestNames materialises the listeners of names a proxyless client asks
// for that are not callees' own: called on the client's stream before its
// watch is made, so the watch finds them.
func (s *Server) requestNames(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, name := range names {
		if name == "" || name == "*" || len(name) > maxNameLen || s.aliasSet[name] {
			continue
		}
		if _, ok := slices.BinarySearch(s.served, name); ok {
			continue
		}
		if len(s.aliases) >= MaxAliases {
			s.log.Warn("xds: a client asked for more names than the server makes listeners for; leaving it to the client's does-not-exist timer",
				"name", name, "limit", MaxAliases)
			continue
		}
		l, err := nameListener(name, s.served)
		if err != nil {
			s.log.Error("xds: making the listener of a requested name", "name", name, "err", err)
			continue
		}
		b, err := cachev3.MarshalResource(l)
		if err != nil {
			s.log.Error("xds: serializing the listener of a requested name", "name", name, "err", err)
			continue
		}
		if err := s.caches[cacheProxylessListeners].UpdateResource(name, l); err != nil {
			s.log.Error("xds: publishing the listener of a requested name", "name", name, "err", err)
			continue
		}
		s.published[cacheProxylessListeners][name] = b
		s.aliases = append(s.aliases, name)
		s.aliasSet[name] = true
	}
}

// ResolveName returns the callee a name stands for among served (sorted),
// by the rules of the names clients dial (above): a callee's own name, or
// with a port, or in another case when that matches one callee only. The
// sidecar's probe gate resolves a call's authority with it.
func ResolveName(name string, served []string) (string, bool) { return resolveName(name, served) }
