package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var composeFile = filepath.Join("compose", "docker-compose.yml")

// compose is the part of the Compose specification the file uses. It is
// decoded strictly, so a key outside this subset (or a misspelt one) fails
// the test: extend the types when the file needs more.
type compose struct {
	Name     string                       `json:"name"`
	Services map[string]composeService    `json:"services"`
	Volumes  map[string]*struct{}         `json:"volumes"`
	Networks map[string]composeNetworkDef `json:"networks"`
}

type composeService struct {
	Build *struct {
		Context    string `json:"context"`
		Dockerfile string `json:"dockerfile"`
		Target     string `json:"target"`
	} `json:"build"`
	Image           string          `json:"image"`
	Entrypoint      []string        `json:"entrypoint"`
	Command         []string        `json:"command"`
	User            string          `json:"user"`
	Ports           []string        `json:"ports"`
	Volumes         []string        `json:"volumes"`
	Networks        serviceNetworks `json:"networks"`
	NetworkMode     string          `json:"network_mode"`
	DependsOn       dependsOn       `json:"depends_on"`
	Restart         string          `json:"restart"`
	StopGracePeriod string          `json:"stop_grace_period"`
	Profiles        []string        `json:"profiles"`
}

type composeNetworkDef struct {
	IPAM struct {
		Config []struct {
			Subnet string `json:"subnet"`
		} `json:"config"`
	} `json:"ipam"`
}

// serviceNetworks is a service's networks, in the list or the map form.
type serviceNetworks map[string]*struct {
	IPv4Address string `json:"ipv4_address"`
}

func (n *serviceNetworks) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*n = serviceNetworks{}
		for _, name := range list {
			(*n)[name] = nil
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	m := map[string]*struct {
		IPv4Address string `json:"ipv4_address"`
	}{}
	if err := dec.Decode(&m); err != nil {
		return err
	}
	*n = m
	return nil
}

// dependsOn is a service's depends_on, in the list or the map form: the
// condition each dependency must meet (service_started for the list form).
type dependsOn map[string]string

func (d *dependsOn) UnmarshalJSON(b []byte) error {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		*d = dependsOn{}
		for _, name := range list {
			(*d)[name] = "service_started"
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	m := map[string]struct {
		Condition string `json:"condition"`
	}{}
	if err := dec.Decode(&m); err != nil {
		return err
	}
	*d = dependsOn{}
	for name, c := range m {
		(*d)[name] = c.Condition
	}
	return nil
}

// publishedPort is one "[ip:]host:container" entry of ports.
type publishedPort struct{ host, container int }

func parsePorts(t reporter, where string, ports []string) []publishedPort {
	t.Helper()
	var out []publishedPort
	for _, p := range ports {
		f := strings.Split(p, ":")
		if len(f) != 3 {
			t.Errorf("%s: port %q: want 127.0.0.1:HOST:CONTAINER (published on loopback only)", where, p)
			continue
		}
		if f[0] != "127.0.0.1" {
			t.Errorf("%s: port %q: publish on 127.0.0.1 only", where, p)
		}
		h, err1 := strconv.Atoi(f[1])
		c, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			t.Errorf("%s: port %q: not numbers", where, p)
			continue
		}
		out = append(out, publishedPort{host: h, container: c})
	}
	return out
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return c
}

// checkCompose checks the compose file's wiring and returns the colony
// command lines in it.
func checkCompose(t reporter, c compose) [][]string {
	t.Helper()
	where := composeFile
	var lines [][]string
	hostPorts := map[int]string{}
	coordinators := map[string]cmdLine{}
	sidecars := map[string]cmdLine{} // by the service whose network they share
	cmds := map[string]cmdLine{}
	var subnet netip.Prefix
	for name, n := range c.Networks {
		if len(n.IPAM.Config) == 1 {
			p, err := netip.ParsePrefix(n.IPAM.Config[0].Subnet)
			if err != nil {
				t.Errorf("%s: network %s: %v", where, name, err)
			}
			subnet = p
		}
	}
	ips := map[string]string{}

	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		w := where + ": service " + name
		for _, p := range parsePorts(t, w, s.Ports) {
			if other, dup := hostPorts[p.host]; dup {
				t.Errorf("%s: host port %d is published by %s too", w, p.host, other)
			}
			hostPorts[p.host] = name
		}
		for d := range s.DependsOn {
			if _, ok := c.Services[d]; !ok {
				t.Errorf("%s: depends_on %s: no such service", w, d)
			}
		}
		for n, cfg := range s.Networks {
			if _, ok := c.Networks[n]; !ok {
				t.Errorf("%s: network %s is not declared", w, n)
			}
			if cfg != nil && cfg.IPv4Address != "" {
				a, err := netip.ParseAddr(cfg.IPv4Address)
				if err != nil || !subnet.Contains(a) {
					t.Errorf("%s: ipv4_address %s is not in the network's subnet %v", w, cfg.IPv4Address, subnet)
				}
				if other, dup := ips[cfg.IPv4Address]; dup {
					t.Errorf("%s: ipv4_address %s is %s's too", w, cfg.IPv4Address, other)
				}
				ips[cfg.IPv4Address] = name
			}
		}
		if owner, ok := strings.CutPrefix(s.NetworkMode, "service:"); ok {
			if o, exists := c.Services[owner]; !exists || o.NetworkMode != "" {
				t.Errorf("%s: network_mode %s: no such service with a network of its own", w, s.NetworkMode)
			}
			if len(s.Ports) > 0 || len(s.Networks) > 0 {
				t.Errorf("%s: ports and networks belong to %s, whose network it shares", w, owner)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(filepath.Dir(composeFile), src)); err != nil {
					t.Errorf("%s: volume %s: %v", w, v, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: volume %s is not declared", w, src)
			}
		}
		if s.Build != nil {
			ctx := filepath.Join(filepath.Dir(composeFile), s.Build.Context)
			if abs, _ := filepath.Abs(ctx); abs != repoRoot {
				t.Errorf("%s: build context %s is not the repository's root", w, s.Build.Context)
			}
			if _, err := os.Stat(filepath.Join(ctx, s.Build.Dockerfile)); err != nil {
				t.Errorf("%s: %v", w, err)
			}
		}
		if len(s.Command) > 0 && colonyCommands[s.Command[0]] {
			if s.Build == nil || len(s.Entrypoint) > 0 {
				t.Errorf("%s: a colony command needs the colony image (build: the repository's Dockerfile, its entrypoint)", w)
			}
			cmd, err := parseCmdLine(s.Command)
			if err != nil {
				t.Errorf("%s: command: %v", w, err)
				continue
			}
			lines = append(lines, s.Command)
			cmds[name] = cmd
			switch cmd.sub {
			case "coordinator":
				coordinators[name] = cmd
			case "sidecar":
				owner, ok := strings.CutPrefix(s.NetworkMode, "service:")
				if !ok {
					t.Errorf("%s: a sidecar shares its app's network: want network_mode service:APP", w)
					continue
				}
				sidecars[owner] = cmd
			}
		}
	}

	// Coordinators: ids, peers and addresses by service name.
	if len(coordinators) < 3 || len(coordinators)%2 == 0 {
		t.Errorf("%s: %d coordinators, want an odd number, at least 3", where, len(coordinators))
	}
	var endpoints []string
	var peers0 map[string]string
	dataVolumes := map[string]string{}
	for _, name := range sortedKeys(coordinators) {
		fl := coordinators[name].flags
		w := where + ": " + name
		grpc := port(t, w+": --grpc-addr", fl["grpc-addr"])
		raft := port(t, w+": --raft-addr", fl["raft-addr"])
		endpoints = append(endpoints, fmt.Sprintf("%s:%d", name, grpc))
		if fl["id"] != name {
			t.Errorf("%s: --id=%s, want the service name", w, fl["id"])
		}
		if want := fmt.Sprintf("%s:%d", name, grpc); fl["grpc-advertise"] != want {
			t.Errorf("%s: --grpc-advertise=%s, want %s", w, fl["grpc-advertise"], want)
		}
		if want := fmt.Sprintf("%s:%d", name, raft); fl["raft-advertise"] != want {
			t.Errorf("%s: --raft-advertise=%s, want %s", w, fl["raft-advertise"], want)
		}
		if fl["bootstrap"] != "true" {
			t.Errorf("%s: want --bootstrap with --peers on every member", w)
		}
		peers, err := peerList(fl["peers"])
		if err != nil {
			t.Errorf("%s: %v", w, err)
		}
		if peers0 == nil {
			peers0 = peers
		} else if fmt.Sprint(peers) != fmt.Sprint(peers0) {
			t.Errorf("%s: --peers differ between coordinators", w)
		}
		if len(peers) != len(coordinators) {
			t.Errorf("%s: --peers names %d members, there are %d coordinators", w, len(peers), len(coordinators))
		}
		for id, addr := range peers {
			other, ok := coordinators[id]
			if !ok {
				t.Errorf("%s: --peers: %s is no coordinator service", w, id)
				continue
			}
			if want := fmt.Sprintf("%s:%d", id, port(t, w, other.flags["raft-addr"])); addr != want {
				t.Errorf("%s: --peers: %s at %s, want %s", w, id, addr, want)
			}
		}
		// Data on a named volume of its own.
		mounted := false
		for _, v := range c.Services[name].Volumes {
			src, dst, _ := strings.Cut(v, ":")
			if dst == fl["data-dir"] {
				mounted = true
				if other, dup := dataVolumes[src]; dup {
					t.Errorf("%s: volume %s is %s's data too", w, src, other)
				}
				dataVolumes[src] = name
			}
		}
		if !mounted {
			t.Errorf("%s: --data-dir=%s is not on a volume", w, fl["data-dir"])
		}
	}

	// Published ports lead to served ones.
	for _, name := range sortedKeys(c.Services) {
		served := map[int]bool{}
		if cmd, ok := cmds[name]; ok {
			for _, f := range []string{"grpc-addr", "raft-addr", "metrics-addr"} {
				if a, ok := cmd.flags[f]; ok && allInterfaces(host(a)) {
					served[port(t, name, a)] = true
				}
			}
		}
		for owner, sc := range sidecars {
			if owner == name && sc.flags["egress-addr"] != "" {
				if allInterfaces(host(sc.flags["egress-addr"])) {
					served[port(t, name, sc.flags["egress-addr"])] = true
				}
			}
		}
		for _, p := range parsePorts(t, name, c.Services[name].Ports) {
			if !served[p.container] {
				t.Errorf("%s: %s publishes container port %d, which nothing serves on all interfaces", where, name, p.container)
			}
		}
	}

	// Sidecars: registered at their app's fixed IP and port, with every coordinator.
	for _, owner := range sortedKeys(sidecars) {
		fl := sidecars[owner].flags
		w := where + ": sidecar of " + owner
		app := c.Services[owner]
		var ip string
		for _, n := range app.Networks {
			if n != nil {
				ip = n.IPv4Address
			}
		}
		if ip == "" || host(fl["address"]) != ip {
			t.Errorf("%s: --address=%s, want %s's fixed ipv4_address (callers' Envoys need an IP)", w, fl["address"], owner)
		}
		if p := port(t, w, fl["address"]); !slices.Contains(app.Command, "--http-port="+strconv.Itoa(p)) {
			t.Errorf("%s: --address port %d is not the app's --http-port (%q)", w, p, app.Command)
		}
		if !sameSet(splitList(fl["coordinators"]), endpoints) {
			t.Errorf("%s: --coordinators=%s, want %s", w, fl["coordinators"], strings.Join(endpoints, ","))
		}
		if strings.Contains(fl["service"], ":") || fl["service"] == "" {
			t.Errorf("%s: --service=%q", w, fl["service"])
		}
	}

	// Envoy: the shared bootstrap, pointed at the sidecar in its network.
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if !strings.Contains(s.Image, "envoyproxy/envoy") {
			continue
		}
		w := where + ": " + name
		owner, _ := strings.CutPrefix(s.NetworkMode, "service:")
		sc, ok := sidecars[owner]
		if !ok {
			t.Errorf("%s: shares the network of %q, which has no sidecar", w, owner)
			continue
		}
		fl, err := flagArgs(s.Command)
		if err != nil {
			t.Errorf("%s: %v", w, err)
			continue
		}
		if fl["service-cluster"] != sc.flags["service"] || fl["service-node"] != sc.flags["instance"] {
			t.Errorf("%s: --service-cluster=%s --service-node=%s, want the sidecar's --service %s and --instance %s",
				w, fl["service-cluster"], fl["service-node"], sc.flags["service"], sc.flags["instance"])
		}
		var bootstrap string
		for _, v := range s.Volumes {
			f := strings.Split(v, ":")
			if len(f) >= 2 && f[1] == fl["config-path"] {
				bootstrap = filepath.Join(filepath.Dir(composeFile), f[0])
			}
		}
		if filepath.Clean(bootstrap) != filepath.Clean(bootstrapFile) {
			t.Errorf("%s: --config-path=%s is not a mount of %s (the bootstrap Kubernetes uses)", w, fl["config-path"], bootstrapFile)
			continue
		}
		data, err := os.ReadFile(bootstrap)
		if err != nil {
			t.Errorf("%s: %v", w, err)
			continue
		}
		f := loadBootstrap(t, w+": "+bootstrap, data)
		listen := sc.flags["listen"]
		if listen == "" {
			listen = "127.0.0.1:7500"
		}
		if f.sidecar.String() != listen {
			t.Errorf("%s: the bootstrap's sidecar is %v, the sidecar of %s listens on %s", w, f.sidecar, owner, listen)
		}
		if _, ok := s.DependsOn[owner]; !ok {
			t.Errorf("%s: want depends_on %s", w, owner)
		}
	}

	checkComposeTLS(t, c, coordinators, sidecars)
	return lines
}

// certsService is the init service that makes the certificates.
const certsService = "certs"

// checkComposeTLS checks that every coordinator and sidecar runs with TLS:
// --certs-dir (never --insecure) on a read-only volume of its own, which
// the certs service fills with the certificate the server looks for
// (node-<id>, sidecar-<service>) and which the coordinators wait for.
func checkComposeTLS(t reporter, c compose, coordinators, sidecars map[string]cmdLine) {
	t.Helper()
	init, ok := c.Services[certsService]
	if !ok {
		t.Errorf("%s: no %s service to make the certificates", composeFile, certsService)
		return
	}
	script := strings.Join(init.Command, "\n")
	initMounts := map[string]string{} // volume -> where the certs service mounts it
	for _, v := range init.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		initMounts[src] = dst
	}
	servers := map[string]cmdLine{}
	want := map[string]string{} // server service -> the pair it looks for
	for name, cmd := range coordinators {
		servers[name] = cmd
		want[name] = "node " + cmd.flags["id"]
		if cond := c.Services[name].DependsOn[certsService]; cond != "service_completed_successfully" {
			t.Errorf("%s: %s: want depends_on %s with condition service_completed_successfully, got %q", composeFile, name, certsService, cond)
		}
	}
	for owner, cmd := range sidecars {
		servers[owner+"-sidecar"] = cmd
		want[owner+"-sidecar"] = "sidecar " + cmd.flags["service"]
	}
	for _, name := range sortedKeys(servers) {
		fl := servers[name].flags
		w := composeFile + ": " + name
		if fl["insecure"] != "" {
			t.Errorf("%s: --insecure: every server of this file runs with TLS", w)
		}
		dir := fl["certs-dir"]
		if dir == "" {
			t.Errorf("%s: no --certs-dir", w)
			continue
		}
		var vol string
		for _, v := range c.Services[name].Volumes {
			f := strings.Split(v, ":")
			if len(f) == 3 && f[1] == dir && f[2] == "ro" {
				vol = f[0]
			}
		}
		if vol == "" {
			t.Errorf("%s: --certs-dir=%s is not a read-only volume mount", w, dir)
			continue
		}
		dst, ok := initMounts[vol]
		if !ok {
			t.Errorf("%s: volume %s is not filled by the %s service", w, vol, certsService)
			continue
		}
		role, id, _ := strings.Cut(want[name], " ")
		if !strings.Contains(script, "issue "+role+" "+id+" "+filepath.Base(dst)) {
			t.Errorf("%s: the %s service does not issue %s-%s into %s (want a line \"issue %s %s %s ...\")", w, certsService, role, id, dst, role, id, filepath.Base(dst))
		}
	}
}

func allInterfaces(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestCompose(t *testing.T) {
	c := loadCompose(t)
	lines := checkCompose(t, c)
	for _, args := range lines {
		checkColonyArgs(t, composeFile, args)
	}
	t.Logf("%d services, %d colony command lines checked", len(c.Services), len(lines))
}

func TestComposeRejects(t *testing.T) {
	setFlag := func(args []string, flag, value string) {
		for i, a := range args {
			if strings.HasPrefix(a, "--"+flag+"=") {
				args[i] = "--" + flag + "=" + value
				return
			}
		}
		panic("no --" + flag)
	}
	for _, tc := range []struct {
		name   string
		break_ func(c compose)
	}{
		{"peers missing a coordinator", func(c compose) {
			setFlag(c.Services["coordinator-2"].Command, "peers", "coordinator-1=coordinator-1:7401,coordinator-2=coordinator-2:7401")
		}},
		{"id not the service", func(c compose) { setFlag(c.Services["coordinator-3"].Command, "id", "n3") }},
		{"sidecar address not the app's IP", func(c compose) {
			setFlag(c.Services["payments-sidecar"].Command, "address", "10.123.45.99:8080")
		}},
		{"sidecar listens where Envoy does not look", func(c compose) {
			setFlag(c.Services["checkout-sidecar"].Command, "listen", "127.0.0.1:7501")
		}},
		{"coordinator without TLS", func(c compose) {
			s := c.Services["coordinator-2"]
			s.Command = append(slices.DeleteFunc(slices.Clone(s.Command), func(a string) bool { return strings.HasPrefix(a, "--certs-dir=") }), "--insecure")
			c.Services["coordinator-2"] = s
		}},
		{"sidecar certificate of another service", func(c compose) {
			setFlag(c.Services["payments-sidecar"].Command, "service", "checkout")
		}},
		{"published port nothing serves", func(c compose) {
			s := c.Services["coordinator-1"]
			s.Ports = append(s.Ports, "127.0.0.1:7403:7403")
			c.Services["coordinator-1"] = s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := loadCompose(t) // a fresh copy to break
			tc.break_(c)
			errs := failures(func(r reporter) { checkCompose(r, c) })
			if len(errs) == 0 {
				t.Fatal("not reported")
			}
			t.Logf("reported: %s", errs[0])
		})
	}
	// Strict decoding: a misspelt key.
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.UnmarshalStrict(bytes.Replace(data, []byte("\n    network_mode:"), []byte("\n    networkmode:"), 1), &c); err == nil {
		t.Error("a misspelt key decoded")
	}
}
