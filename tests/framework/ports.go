package framework

import (
	"fmt"
	"net"
)

// FreePorts returns n distinct TCP ports of ip (a loopback address) that
// were free a moment ago. They are held open together while picking, so
// they differ; another process may still take one before the caller binds
// it, so starting a server on them is retried (see StartRetrying).
func FreePorts(ip string, n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("finding a free port on %s: %w", ip, err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
