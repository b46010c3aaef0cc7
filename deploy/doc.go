// Package deploy holds no Go code: it is where Colony's deployment files
// live, and its tests check them without Docker or a Kubernetes cluster.
//
//   - ../Dockerfile: the colony binary in a small static image (non-root);
//   - k8s/: kustomize bases for the coordinator cluster (base: with
//     cert-manager certificates and a NetworkPolicy) and a sample app pod
//     with Envoy and the Colony sidecar (sample-app), and an overlay with
//     both (overlays/demo);
//   - compose/: a local 3-node cluster with two services and their
//     sidecars, its certificates made by `colony cert` in an init service;
//   - grafana/: a dashboard on the coordinator's metrics.
//
// The tests render every kustomization (sigs.k8s.io/kustomize/api) and
// decode each object strictly with the Kubernetes API types, validate the
// Envoy bootstrap with Envoy's protos, decode the compose file, check the
// Dockerfile statically, and check that the pieces agree: ports, names, the
// raft peers, addresses, probes, security contexts, and that every server
// runs with --certs-dir holding the certificate of its own SPIFFE identity.
// cert-manager's Issuer and Certificate are decoded with minimal local
// types (certmanager_test.go), as strictly as the built-in kinds. Every colony command line
// in them is parsed by the colony binary itself (built from ../cmd/colony;
// skipped with -short).
package deploy
