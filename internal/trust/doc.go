// Package trust is Colony's one source of TLS configuration and of the
// identities certificates carry.
//
// A Material holds a CA bundle, a certificate and its key, read from PEM
// files and read again whenever one of the files changes (checked at most
// once a second, on a handshake), so that rotated certificates take effect
// without a restart. Every listener and every dial builds its tls.Config
// from a Material: ServerConfig for listeners, ClientConfig for dials that
// verify the server's host name, PeerConfig for node-to-node connections
// (raft, forwarding), which verify that the other side holds a node
// certificate of the cluster's trust domain instead of a host name, so they
// work through proxies and NAT.
//
// An Identity is read from a verified certificate: its SPIFFE URI SAN
// (spiffe://<trust-domain>/<role>/<name>, for example
// spiffe://colony.local/sidecar/checkout), else its subject common name.
// The role in a SPIFFE ID of the cluster's own trust domain grants the
// built-in rights of that role (node, sidecar, operator, admin); any other
// certificate is an ordinary client whose rights come only from
// authorization rules.
//
// The pki.go half creates the certificates: a CA, and leaf certificates for
// each role with the right SANs (colony cert, colony dev).
package trust
