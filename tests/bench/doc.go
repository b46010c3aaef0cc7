// Package bench holds Colony's benchmarks against real processes: a 3-node
// Colony coordinator cluster built from ./cmd/colony, and, for comparison,
// real 3-member etcd and ZooKeeper clusters from the Debian packages. All
// traffic stays on 127.0.0.1. See README.md for how to run them and the
// figures measured.
package bench
