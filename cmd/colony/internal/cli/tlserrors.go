package cli

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/colonymesh/colony/internal/trust"
)

// unauthenticated is a connection the TLS layer refused, explained: it
// reads as its message and hint, matches what it wraps, and is an
// Unauthenticated status to gRPC-aware callers.
type unauthenticated struct{ *hinted }

func (e *unauthenticated) GRPCStatus() *status.Status {
	return status.New(codes.Unauthenticated, e.Error())
}

// tlsProblem explains an error that comes from TLS between the command and
// the coordinators: which certificate was used (or that none was) and why
// one side refused the other. Nil for any other error.
//
// gRPC reports these only as text in an Unavailable status, so the text is
// read: "authentication handshake failed: REASON" for a handshake this
// side gave up on, "remote error: tls: ..." for a certificate the server
// refused, and "error reading server preface" for a TLS server that closed
// a plaintext connection.
func tlsProblem(cmd *cobra.Command, err error) error {
	if !unavailable(err) && status.Code(err) != codes.Unauthenticated {
		return nil
	}
	msg := err.Error()
	src, srcErr := TLSOf(cmd)
	eps := endpointsText(cmd)
	if srcErr != nil {
		return nil
	}
	if src == nil {
		if !strings.Contains(msg, "server preface") && !strings.Contains(msg, "tls:") && !speaksTLS(cmd) {
			return nil
		}
		return &unauthenticated{&hinted{err: err,
			msg: fmt.Sprintf("unauthenticated: the coordinator at %s closed the connection: it requires TLS and a client certificate, and this command had none", eps),
			hint: "Give a certificate: --certs-dir DIR (or $" + CertsDirEnv + ") with ca.crt and one admin-, operator- or client- pair, or --cacert, --cert and --key;\n" +
				"`colony cert client --certs-dir DIR --name NAME --role operator` makes one. (colony dev's own are used by themselves when it runs on this machine: " + DevTLSDir() + ".)"}}
	}
	used := fmt.Sprintf("certificate %s (%s", src.Files.Cert, src.From)
	if m, err := trust.Load(src.Files, "", nil); err == nil {
		used += ", " + m.Identity().ID
	}
	used += ")"
	reason := tlsReason(msg)
	if probed := probeTLS(cmd, src); probed != "" {
		reason = probed // the handshake's own error beats gRPC's text of it
	}
	switch {
	case reason == "":
		return nil
	case strings.Contains(reason, "first record does not look like a TLS handshake"):
		return &unauthenticated{&hinted{err: err,
			msg:  fmt.Sprintf("the coordinator at %s does not speak TLS (it runs --insecure?); this command used %s: %s", eps, used, reason),
			hint: "Talk plaintext to an insecure coordinator with --insecure."}}
	case strings.Contains(reason, "remote error"):
		return &unauthenticated{&hinted{err: err,
			msg:  fmt.Sprintf("unauthenticated: the coordinator at %s refused %s: %s", eps, used, reason),
			hint: "The certificate must be signed by the cluster's CA and not expired; `colony cert client --certs-dir DIR --name NAME` makes one with the cluster's CA."}}
	case strings.Contains(reason, "x509:") || strings.Contains(reason, "server certificate"):
		return &unauthenticated{&hinted{err: err,
			msg: fmt.Sprintf("the certificate of the coordinator at %s was not accepted with CA %s (%s): %s", eps, src.Files.CA, src.From, reason),
			hint: "Give the cluster's CA (--cacert, or ca.crt in --certs-dir), and dial an address the node's certificate names\n" +
				"(`colony cert node --host` sets them; `openssl x509 -noout -text -in node-ID.crt` lists them)."}}
	}
	return &unauthenticated{&hinted{err: err,
		msg: fmt.Sprintf("TLS with the coordinator at %s failed using %s: %s", eps, used, reason)}}
}

// probeTimeout bounds each step of a TLS probe.
const probeTimeout = time.Second

// probeTLS makes a TLS connection to the first endpoint that accepts one,
// presenting src's certificate, and returns why TLS failed: the handshake's
// error, or the alert the server sent after it (with TLS 1.3 the server
// refuses a client certificate only after the client has finished its
// side, so gRPC sees a broken connection rather than the reason). "" when
// TLS works or no endpoint can be reached.
func probeTLS(cmd *cobra.Command, src *TLSSource) string {
	m, err := trust.Load(src.Files, "", nil)
	if err != nil {
		return err.Error()
	}
	eps, _ := EndpointsOf(cmd)
	for _, ep := range eps {
		host, _, err := net.SplitHostPort(ep)
		if err != nil {
			continue
		}
		conn, err := net.DialTimeout("tcp", ep, probeTimeout)
		if err != nil {
			continue
		}
		reason := func() string {
			defer conn.Close()
			tc := tls.Client(conn, m.ClientConfig(host, "h2"))
			_ = tc.SetDeadline(time.Now().Add(probeTimeout))
			if err := tc.Handshake(); err != nil {
				return err.Error()
			}
			// A server that refuses the certificate says so now; one that
			// accepted it sends its HTTP/2 settings (or nothing yet).
			_ = tc.SetReadDeadline(time.Now().Add(probeTimeout / 2))
			if _, err := tc.Read(make([]byte, 1)); err != nil && strings.Contains(err.Error(), "tls:") {
				return err.Error()
			}
			return ""
		}()
		if reason != "" {
			return reason
		}
	}
	return ""
}

// speaksTLS reports whether the first reachable endpoint answers a TLS
// handshake (a secure coordinator, which a plaintext client cannot use).
func speaksTLS(cmd *cobra.Command) bool {
	eps, _ := EndpointsOf(cmd)
	for _, ep := range eps {
		conn, err := net.DialTimeout("tcp", ep, probeTimeout)
		if err != nil {
			continue
		}
		defer conn.Close()
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // only asks whether the server speaks TLS
		_ = tc.SetDeadline(time.Now().Add(probeTimeout))
		err = tc.Handshake()
		return err == nil || strings.Contains(err.Error(), "remote error: tls:")
	}
	return false
}

// tlsReason finds the TLS failure in gRPC's text of a failed connection.
func tlsReason(msg string) string {
	for _, marker := range []string{"authentication handshake failed: ", "remote error: tls: "} {
		if i := strings.Index(msg, marker); i >= 0 {
			r := msg[i:]
			if marker == "authentication handshake failed: " {
				r = r[len(marker):]
			}
			// The reason ends the quoted desc = "..." of gRPC's text, and
			// may hold quotes of its own, escaped.
			if j := strings.LastIndex(r, `"`); j > 0 && r[j-1] != '\\' {
				r = r[:j]
			}
			return strings.TrimSpace(strings.ReplaceAll(r, `\"`, `"`))
		}
	}
	return ""
}
