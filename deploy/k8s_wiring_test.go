package deploy_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/colonymesh/colony/xds"
)

// The wiring checks: what each part of the Kubernetes deployment must agree
// on with the others and with the binary.

// sampleVars are the values the tests give the downward-API variables.
func sampleVars(c corev1.Container, podName string) map[string]string {
	vars := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			vars[e.Name] = map[string]string{
				"metadata.name":      podName,
				"metadata.namespace": "colony",
				"status.podIP":       "10.1.2.3",
			}[e.ValueFrom.FieldRef.FieldPath]
		case e.ValueFrom == nil:
			vars[e.Name] = expand(e.Value, vars)
		}
	}
	return vars
}

// fieldRefVar names the container's variable set from a pod field.
func fieldRefVar(c corev1.Container, fieldPath string) string {
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == fieldPath {
			return e.Name
		}
	}
	return ""
}

// checkVarRefs checks that every $(NAME) in a container's command, args and
// env is a variable the kubelet knows there (otherwise it is passed on
// literally): args may use any of the container's variables, an env value
// only the ones before it.
func checkVarRefs(t reporter, where string, c corev1.Container) {
	t.Helper()
	defined := map[string]bool{}
	for _, e := range c.Env {
		for _, m := range varRef.FindAllStringSubmatch(e.Value, -1) {
			if !defined[m[1]] {
				t.Errorf("%s: env %s uses $(%s), which is not defined before it", where, e.Name, m[1])
			}
		}
		defined[e.Name] = true
	}
	for _, a := range slices.Concat(c.Command, c.Args) {
		for _, m := range varRef.FindAllStringSubmatch(a, -1) {
			if !defined[m[1]] {
				t.Errorf("%s: %q uses $(%s), which the container does not define", where, a, m[1])
			}
		}
	}
}

// containerPort resolves a named or numbered port against a container's ports.
func containerPort(c corev1.Container, p intstr.IntOrString) (int, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

func allContainers(spec corev1.PodSpec) []corev1.Container {
	return slices.Concat(spec.InitContainers, spec.Containers)
}

// podPort resolves a Service's targetPort against the pod's containers.
func podPort(spec corev1.PodSpec, p intstr.IntOrString) (int, bool) {
	for _, c := range allContainers(spec) {
		if n, ok := containerPort(c, p); ok {
			return n, true
		}
	}
	return 0, false
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// probePort is where a probe connects, and its HTTP path if any.
func probePort(p *corev1.Probe) (intstr.IntOrString, string, string) {
	switch {
	case p.TCPSocket != nil:
		return p.TCPSocket.Port, "", "tcpSocket"
	case p.HTTPGet != nil:
		return p.HTTPGet.Port, p.HTTPGet.Path, "httpGet"
	case p.GRPC != nil:
		return intstr.FromInt32(p.GRPC.Port), "", "grpc"
	}
	return intstr.IntOrString{}, "", "exec"
}

// checkPodSecurity checks what Pod Security's restricted profile requires,
// and a read-only root filesystem, for every container.
func checkPodSecurity(t reporter, where string, spec corev1.PodSpec) {
	t.Helper()
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken: want false (nothing here calls the Kubernetes API)", where)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: host namespaces", where)
	}
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	for _, c := range allContainers(spec) {
		w := where + ": container " + c.Name
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", w)
			continue
		}
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil {
			nonRoot = psc.RunAsNonRoot
		}
		if nonRoot == nil || !*nonRoot {
			t.Errorf("%s: runAsNonRoot is not true", w)
		}
		uid := sc.RunAsUser
		if uid == nil {
			uid = psc.RunAsUser
		}
		if uid == nil || *uid == 0 {
			t.Errorf("%s: want an explicit non-zero runAsUser (the images' users differ)", w)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation: want false", w)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", w)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities: want drop [ALL] and nothing added", w)
		}
		sp := sc.SeccompProfile
		if sp == nil {
			sp = psc.SeccompProfile
		}
		if sp == nil || (sp.Type != corev1.SeccompProfileTypeRuntimeDefault && sp.Type != corev1.SeccompProfileTypeLocalhost) {
			t.Errorf("%s: seccompProfile: want RuntimeDefault", w)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem: want true", w)
		}
	}
}

// checkServices checks every Service that selects the pods: its ports
// lead to container ports, with the same numbers (a client dials the port
// the flags name, whether through the Service or a pod's DNS name).
func checkServices(t reporter, where string, objs []runtime.Object, labels map[string]string, spec corev1.PodSpec) []*corev1.Service {
	t.Helper()
	var out []*corev1.Service
	for _, s := range objectsOf[*corev1.Service](objs) {
		if !selects(s.Spec.Selector, labels) {
			continue
		}
		out = append(out, s)
		for _, p := range s.Spec.Ports {
			tp := p.TargetPort
			if tp.Type == intstr.Int && tp.IntVal == 0 {
				tp = intstr.FromInt32(p.Port)
			}
			n, ok := podPort(spec, tp)
			switch {
			case !ok:
				t.Errorf("%s: Service %s port %s: targetPort %s is no container port", where, s.Name, p.Name, tp.String())
			case n != int(p.Port):
				t.Errorf("%s: Service %s port %s: %d leads to container port %d: keep them equal", where, s.Name, p.Name, p.Port, n)
			}
		}
	}
	return out
}

// coordinatorFacts is what clients of the coordinator cluster need.
type coordinatorFacts struct {
	endpoints []string // every voter's gRPC address by its stable DNS name
	image     string
}

func imageRepo(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[:i]
	}
	return image
}

// checkCoordinators checks the coordinator StatefulSet and everything
// around it, and returns the colony command lines (variables replaced by
// sample values) for the binary to parse.
func checkCoordinators(t reporter, where string, objs []runtime.Object) (*coordinatorFacts, [][]string) {
	t.Helper()
	var sts *appsv1.StatefulSet
	var c corev1.Container
	for _, s := range objectsOf[*appsv1.StatefulSet](objs) {
		for _, ct := range s.Spec.Template.Spec.Containers {
			if len(ct.Args) > 0 && ct.Args[0] == "coordinator" {
				if sts != nil {
					t.Errorf("%s: more than one coordinator StatefulSet", where)
				}
				sts, c = s, ct
			}
		}
	}
	if sts == nil {
		return nil, nil
	}
	where += ": StatefulSet " + sts.Name
	spec := sts.Spec.Template.Spec
	labels := sts.Spec.Template.Labels
	if sts.Spec.Selector == nil || !selects(sts.Spec.Selector.MatchLabels, labels) || len(sts.Spec.Selector.MatchExpressions) > 0 {
		t.Errorf("%s: selector does not match the pod template's labels", where)
	}
	replicas := 1
	if sts.Spec.Replicas != nil {
		replicas = int(*sts.Spec.Replicas)
	}
	if replicas < 3 || replicas%2 == 0 {
		t.Errorf("%s: %d replicas: want an odd number of voters, at least 3", where, replicas)
	}
	if len(c.Command) > 0 && !slices.Equal(c.Command, []string{"/colony"}) {
		t.Errorf("%s: command %q: the image's entrypoint is /colony", where, c.Command)
	}
	checkVarRefs(t, where, c)
	cmd, err := parseCmdLine(c.Args)
	if err != nil {
		t.Fatalf("%s: args: %v", where, err)
	}
	fl := cmd.flags
	podVar, ipVar := fieldRefVar(c, "metadata.name"), fieldRefVar(c, "status.podIP")
	if podVar == "" || ipVar == "" {
		t.Fatalf("%s: want env variables from metadata.name and status.podIP (downward API)", where)
	}

	// Ports: each flag's port is a named container port, and the container
	// declares no port the binary does not serve.
	ports := map[string]int{}
	for flag, name := range map[string]string{"grpc-addr": "grpc", "raft-addr": "raft", "metrics-addr": "metrics"} {
		addr, ok := fl[flag]
		if !ok {
			if flag != "metrics-addr" {
				t.Errorf("%s: --%s not set (its default is loopback only)", where, flag)
			}
			continue
		}
		if h := host(addr); h != "" && h != "0.0.0.0" && h != "::" {
			t.Errorf("%s: --%s=%s: bind all interfaces, other pods connect", where, flag, addr)
		}
		p := port(t, where+": --"+flag, addr)
		ports[name] = p
		if n, ok := containerPort(c, intstr.FromString(name)); !ok || n != p {
			t.Errorf("%s: --%s=%s, but container port %q is %d", where, flag, addr, name, n)
		}
	}
	for _, cp := range c.Ports {
		if ports[cp.Name] != int(cp.ContainerPort) {
			t.Errorf("%s: container port %s (%d) is not one the flags serve", where, cp.Name, cp.ContainerPort)
		}
	}

	// Identity and cluster membership from the StatefulSet's stable names.
	svc := sts.Spec.ServiceName
	podDNS := func(pod string) string { return pod + "." + svc }
	if fl["id"] != "$("+podVar+")" {
		t.Errorf("%s: --id=%s, want $(%s): the pod name, stable across restarts", where, fl["id"], podVar)
	}
	if fl["bootstrap"] != "true" || fl["join"] != "" {
		t.Errorf("%s: want --bootstrap with --peers on every member (and no --join)", where)
	}
	peers, err := peerList(fl["peers"])
	if err != nil {
		t.Errorf("%s: %v", where, err)
	}
	if len(peers) != replicas {
		t.Errorf("%s: --peers names %d members, the StatefulSet has %d replicas", where, len(peers), replicas)
	}
	facts := &coordinatorFacts{image: c.Image}
	for i := 0; i < replicas; i++ {
		pod := fmt.Sprintf("%s-%d", sts.Name, i)
		addr, ok := peers[pod]
		if !ok {
			t.Errorf("%s: --peers has no member %s (pod %d)", where, pod, i)
			continue
		}
		if h := host(addr); h != podDNS(pod) && !strings.HasPrefix(h, podDNS(pod)+".") {
			t.Errorf("%s: --peers: %s at %q, want its stable name %s", where, pod, addr, podDNS(pod))
		}
		if port(t, where+": --peers", addr) != ports["raft"] {
			t.Errorf("%s: --peers: %s at %q, not on the raft port %d", where, pod, addr, ports["raft"])
		}
		facts.endpoints = append(facts.endpoints, fmt.Sprintf("%s:%d", podDNS(pod), ports["grpc"]))
	}
	if want := fmt.Sprintf("$(%s).%s:%d", podVar, svc, ports["grpc"]); fl["grpc-advertise"] != want {
		t.Errorf("%s: --grpc-advertise=%s, want %s", where, fl["grpc-advertise"], want)
	}
	if want := fmt.Sprintf("$(%s):%d", ipVar, ports["raft"]); fl["raft-advertise"] != want {
		t.Errorf("%s: --raft-advertise=%s, want %s (resolved once at start)", where, fl["raft-advertise"], want)
	}

	// Data on the volume claim template.
	dataDir := fl["data-dir"]
	onClaim := false
	for _, m := range c.VolumeMounts {
		for _, vct := range sts.Spec.VolumeClaimTemplates {
			if m.Name == vct.Name && path.Clean(m.MountPath) == path.Clean(dataDir) && !m.ReadOnly {
				onClaim = true
			}
		}
	}
	if dataDir == "" || !onClaim {
		t.Errorf("%s: --data-dir=%q is not a volumeClaimTemplate's mount", where, dataDir)
	}

	// Probes on ports the coordinator serves: it has no gRPC health service
	// and serves only /metrics over HTTP.
	for name, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe, "startupProbe": c.StartupProbe} {
		if p == nil {
			if name != "startupProbe" {
				t.Errorf("%s: no %s", where, name)
			}
			continue
		}
		pp, httpPath, kind := probePort(p)
		n, ok := containerPort(c, pp)
		switch {
		case kind == "exec" || kind == "grpc":
			t.Errorf("%s: %s: %s probe; the coordinator serves no grpc.health.v1, probe a port", where, name, kind)
		case !ok:
			t.Errorf("%s: %s: port %s is no container port", where, name, pp.String())
		case kind == "tcpSocket" && n != ports["grpc"] && n != ports["metrics"]:
			t.Errorf("%s: %s: port %d is served by neither gRPC nor metrics", where, name, n)
		case kind == "httpGet" && (n != ports["metrics"] || httpPath != "/metrics"):
			t.Errorf("%s: %s: HTTP %d%s: only /metrics on the metrics port answers", where, name, n, httpPath)
		}
	}

	// A leader transfers leadership on SIGTERM (bounded by the election
	// timeout), drains gRPC (2 s), stops raft, flushes traces (5 s).
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g < 15 {
		t.Errorf("%s: terminationGracePeriodSeconds: want at least 15 for the leadership transfer and shutdown", where)
	}

	// Prometheus scrape annotations on the metrics port.
	ann := sts.Spec.Template.Annotations
	if mp, ok := ports["metrics"]; ok {
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(mp) || ann["prometheus.io/path"] != "/metrics" {
			t.Errorf("%s: Prometheus annotations %v, want scrape \"true\", port %d, path /metrics", where, ann, mp)
		}
	} else if ann["prometheus.io/scrape"] == "true" {
		t.Errorf("%s: scraped, but --metrics-addr is not set", where)
	}

	// The headless Service behind the stable names.
	services := checkServices(t, where, objs, labels, spec)
	var headless, client *corev1.Service
	for _, s := range services {
		if s.Name == svc {
			headless = s
		} else if s.Spec.ClusterIP != corev1.ClusterIPNone {
			for _, p := range s.Spec.Ports {
				if n, _ := podPort(spec, p.TargetPort); n == ports["grpc"] {
					client = s
				}
			}
		}
	}
	switch {
	case headless == nil:
		t.Errorf("%s: serviceName %q: no such Service selecting the pods", where, svc)
	default:
		if headless.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("%s: Service %s: want clusterIP: None (headless)", where, svc)
		}
		if !headless.Spec.PublishNotReadyAddresses {
			t.Errorf("%s: Service %s: want publishNotReadyAddresses, so peers find each other before any is ready", where, svc)
		}
		for _, name := range []string{"grpc", "raft"} {
			found := false
			for _, p := range headless.Spec.Ports {
				if n, _ := podPort(spec, p.TargetPort); n == ports[name] && n != 0 {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: Service %s has no %s port", where, svc, name)
			}
		}
	}
	if client == nil {
		t.Errorf("%s: no client Service for the gRPC port", where)
	}

	// The disruption budget keeps a quorum.
	pdbs := 0
	for _, pdb := range objectsOf[*policyv1.PodDisruptionBudget](objs) {
		if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, labels) {
			continue
		}
		pdbs++
		mu := pdb.Spec.MaxUnavailable
		if mu == nil || mu.Type != intstr.Int || mu.IntVal < 1 || replicas-int(mu.IntVal) < replicas/2+1 {
			t.Errorf("%s: PodDisruptionBudget %s: maxUnavailable %v; want a number that keeps a quorum of %d", where, pdb.Name, mu, replicas/2+1)
		}
	}
	if pdbs != 1 {
		t.Errorf("%s: %d PodDisruptionBudgets select the pods, want 1", where, pdbs)
	}

	for _, vct := range sts.Spec.VolumeClaimTemplates {
		if _, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || !slices.Contains(vct.Spec.AccessModes, corev1.ReadWriteOnce) {
			t.Errorf("%s: volumeClaimTemplate %s: want ReadWriteOnce with a storage request", where, vct.Name)
		}
	}
	checkPodSecurity(t, where, spec)

	vars := sampleVars(c, sts.Name+"-0")
	var args []string
	for _, a := range c.Args {
		args = append(args, expand(a, vars))
	}
	return facts, [][]string{args}
}

// checkSampleApps checks each Deployment with a Colony sidecar: the
// sidecar's flags against the app, Envoy and its bootstrap, and the
// coordinators.
func checkSampleApps(t reporter, where string, objs []runtime.Object, coord *coordinatorFacts) [][]string {
	t.Helper()
	var cmdLines [][]string
	for _, d := range objectsOf[*appsv1.Deployment](objs) {
		w := where + ": Deployment " + d.Name
		spec := d.Spec.Template.Spec
		labels := d.Spec.Template.Labels
		if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, labels) {
			t.Errorf("%s: selector does not match the pod template's labels", w)
		}
		sidecarAt, envoyAt := -1, -1
		for i, c := range spec.InitContainers {
			if len(c.Args) > 0 && c.Args[0] == "sidecar" {
				sidecarAt = i
			}
			if strings.Contains(c.Image, "envoyproxy/envoy") {
				envoyAt = i
			}
		}
		for _, c := range spec.Containers {
			if (len(c.Args) > 0 && c.Args[0] == "sidecar") || strings.Contains(c.Image, "envoyproxy/envoy") {
				t.Errorf("%s: %s is an app container; run it as a native sidecar (an init container with restartPolicy Always) so it starts before the app and stops after it", w, c.Name)
			}
		}
		if sidecarAt < 0 {
			continue
		}
		sc := spec.InitContainers[sidecarAt]
		for _, i := range []int{sidecarAt, envoyAt} {
			if i >= 0 && (spec.InitContainers[i].RestartPolicy == nil || *spec.InitContainers[i].RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				t.Errorf("%s: init container %s: want restartPolicy Always (a native sidecar)", w, spec.InitContainers[i].Name)
			}
		}
		if coord != nil && imageRepo(sc.Image) != imageRepo(coord.image) {
			t.Errorf("%s: sidecar image %s, coordinator image %s: one colony image", w, sc.Image, coord.image)
		}
		checkVarRefs(t, w, sc)
		cmd, err := parseCmdLine(sc.Args)
		if err != nil {
			t.Errorf("%s: sidecar args: %v", w, err)
			continue
		}
		fl := cmd.flags
		podVar, ipVar := fieldRefVar(sc, "metadata.name"), fieldRefVar(sc, "status.podIP")
		service := fl["service"]
		if service == "" || service != labels["app.kubernetes.io/name"] {
			t.Errorf("%s: --service=%q, want the pods' app.kubernetes.io/name %q", w, service, labels["app.kubernetes.io/name"])
		}
		if podVar == "" || fl["instance"] != "$("+podVar+")" {
			t.Errorf("%s: --instance=%q, want the pod name (a downward-API variable)", w, fl["instance"])
		}
		if p := fl["protocol"]; p != "" && p != "grpc" && p != "http" {
			t.Errorf("%s: --protocol=%s, want grpc or http", w, p)
		}
		// --address: the pod IP and a port the app serves.
		addr := fl["address"]
		if ipVar == "" || host(addr) != "$("+ipVar+")" {
			t.Errorf("%s: --address=%q, want $(POD_IP):PORT: callers' Envoys need an IP", w, addr)
		}
		appPort := port(t, w+": --address", addr)
		served := false
		for _, c := range spec.Containers {
			for _, cp := range c.Ports {
				served = served || int(cp.ContainerPort) == appPort
			}
		}
		if !served {
			t.Errorf("%s: --address port %d is no app container's port", w, appPort)
		}
		listen := fl["listen"]
		if listen == "" {
			listen = "127.0.0.1:7500"
		}
		listenAP, err := netip.ParseAddrPort(listen)
		if err != nil || !listenAP.Addr().IsLoopback() {
			t.Errorf("%s: --listen=%s: want a loopback IP:port (the sidecar's API is for this pod only)", w, listen)
		}
		egress := fl["egress-addr"]
		if egress == "" {
			egress = xds.DefaultEgressAddr
		}
		if coord != nil {
			got := splitList(fl["coordinators"])
			if !sameSet(got, coord.endpoints) {
				t.Errorf("%s: --coordinators=%s, want every voter: %s", w, fl["coordinators"], strings.Join(coord.endpoints, ","))
			}
		} else if fl["coordinators"] == "" {
			t.Errorf("%s: no --coordinators", w)
		}

		// What binds which port in the pod's network namespace.
		bound := map[int]string{}
		bind := func(p int, what string) {
			if other, dup := bound[p]; dup && other != what {
				t.Errorf("%s: port %d: %s and %s", w, p, other, what)
			}
			bound[p] = what
		}
		bind(int(listenAP.Port()), "the sidecar (--listen)")
		bind(port(t, w+": --egress-addr", egress), "Envoy's egress listener (--egress-addr)")
		for _, c := range spec.Containers {
			for _, cp := range c.Ports {
				bind(int(cp.ContainerPort), "container "+c.Name)
			}
		}

		// Envoy and its bootstrap.
		if envoyAt < 0 {
			t.Errorf("%s: no Envoy container", w)
		} else {
			if envoyAt < sidecarAt {
				t.Errorf("%s: Envoy starts before the sidecar it gets its configuration from", w)
			}
			checkEnvoyContainer(t, w, objs, spec.Volumes, spec.InitContainers[envoyAt], service, listenAP, bind)
		}

		// The app's environment points at the sidecar and Envoy.
		for _, c := range spec.Containers {
			checkVarRefs(t, w, c)
			vars := sampleVars(c, d.Name+"-abc")
			for _, e := range c.Env {
				v := expand(e.Value, vars)
				switch e.Name {
				case "COLONY_SIDECAR":
					if v != listen {
						t.Errorf("%s: %s: COLONY_SIDECAR=%s, the sidecar listens on %s", w, c.Name, v, listen)
					}
				case "COLONY_EGRESS":
					if v != egress {
						t.Errorf("%s: %s: COLONY_EGRESS=%s, Envoy's egress listener is %s", w, c.Name, v, egress)
					}
				case "GRPC_XDS_BOOTSTRAP_CONFIG":
					var gb struct {
						XDSServers []struct {
							ServerURI string `json:"server_uri"`
						} `json:"xds_servers"`
						Node struct {
							ID string `json:"id"`
						} `json:"node"`
					}
					if err := json.Unmarshal([]byte(v), &gb); err != nil || len(gb.XDSServers) != 1 {
						t.Errorf("%s: %s: GRPC_XDS_BOOTSTRAP_CONFIG: want JSON with one xds server: %v", w, c.Name, err)
					} else if gb.XDSServers[0].ServerURI != listen || gb.Node.ID == "" || strings.Contains(gb.Node.ID, "$(") {
						t.Errorf("%s: %s: GRPC_XDS_BOOTSTRAP_CONFIG: server_uri %s (the sidecar is %s), node id %q", w, c.Name, gb.XDSServers[0].ServerURI, listen, gb.Node.ID)
					}
				}
			}
			for name, p := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
				if p == nil {
					continue
				}
				if pp, _, _ := probePort(p); !portOK(c, pp) {
					t.Errorf("%s: %s: %s on port %s, which the container does not declare", w, c.Name, name, pp.String())
				}
			}
		}
		checkServices(t, w, objs, labels, spec)
		checkPodSecurity(t, w, spec)

		vars := sampleVars(sc, d.Name+"-abc")
		var args []string
		for _, a := range sc.Args {
			args = append(args, expand(a, vars))
		}
		cmdLines = append(cmdLines, args)
	}
	return cmdLines
}

func portOK(c corev1.Container, p intstr.IntOrString) bool {
	_, ok := containerPort(c, p)
	return ok
}

// checkEnvoyContainer checks Envoy's command line, its bootstrap (from the
// ConfigMap it mounts) against the sidecar, and its probes.
func checkEnvoyContainer(t reporter, w string, objs []runtime.Object, volumes []corev1.Volume, c corev1.Container, service string, sidecar netip.AddrPort, bind func(int, string)) {
	t.Helper()
	w += ": Envoy"
	checkVarRefs(t, w, c)
	fl, err := flagArgs(c.Args)
	if err != nil {
		t.Errorf("%s: args: %v", w, err)
		return
	}
	if podVar := fieldRefVar(c, "metadata.name"); podVar == "" || fl["service-node"] != "$("+podVar+")" {
		t.Errorf("%s: --service-node=%q, want the pod name", w, fl["service-node"])
	}
	if fl["service-cluster"] != service {
		t.Errorf("%s: --service-cluster=%q, want the sidecar's --service %q", w, fl["service-cluster"], service)
	}
	cfg := fl["config-path"]
	var data string
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Dir(cfg) && !(m.SubPath != "" && m.MountPath == cfg) {
			continue
		}
		key := path.Base(cfg)
		if m.SubPath != "" {
			key = m.SubPath
		}
		for _, cm := range objectsOf[*corev1.ConfigMap](objs) {
			for _, vol := range volumes {
				if vol.Name == m.Name && vol.ConfigMap != nil && vol.ConfigMap.Name == cm.Name {
					data = cm.Data[key]
				}
			}
		}
	}
	if data == "" {
		t.Errorf("%s: --config-path=%q: no ConfigMap in this kustomization is mounted there with that key", w, cfg)
		return
	}
	f := loadBootstrap(t, w+": bootstrap", []byte(data))
	if f.sidecar != sidecar {
		t.Errorf("%s: bootstrap: ADS and access logs go to %v, the sidecar listens on %v", w, f.sidecar, sidecar)
	}
	if f.adminPort != 0 {
		bind(f.adminPort, "Envoy's admin")
	}
	for p, name := range f.listeners {
		bind(p, "Envoy's listener "+name)
	}
	for _, cp := range c.Ports {
		if _, ok := f.listeners[int(cp.ContainerPort)]; !ok {
			t.Errorf("%s: container port %d is no listener of the bootstrap", w, cp.ContainerPort)
		}
	}
	probes := 0
	for name, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if p == nil {
			continue
		}
		probes++
		pp, httpPath, kind := probePort(p)
		n, ok := containerPort(c, pp)
		if !ok || kind != "httpGet" || !slices.Contains(f.ready[n], httpPath) {
			t.Errorf("%s: %s: %s %s%s: want an HTTP path a static listener answers (%v)", w, name, kind, pp.String(), httpPath, f.ready)
		}
	}
	if probes == 0 {
		t.Errorf("%s: no probes", w)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// checkNamespaces: with a Namespace in the rendering, everything is in it.
func checkNamespaces(t reporter, where string, objs []runtime.Object) {
	t.Helper()
	nss := objectsOf[*corev1.Namespace](objs)
	if len(nss) == 0 {
		return
	}
	for _, o := range objs {
		m, ok := o.(interface{ GetNamespace() string })
		if _, isNS := o.(*corev1.Namespace); ok && !isNS && m.GetNamespace() != nss[0].Name {
			t.Errorf("%s: %T %s is not in namespace %s", where, o, objectName(o), nss[0].Name)
		}
	}
}

// checkWiring runs every check on one rendering. base, when the rendering
// has no coordinators, supplies them (the sample app is applied beside
// the base, in the same namespace).
func checkWiring(t reporter, where string, objs []runtime.Object, base *coordinatorFacts) [][]string {
	t.Helper()
	coord, lines := checkCoordinators(t, where, objs)
	if coord == nil {
		coord = base
	}
	lines = append(lines, checkSampleApps(t, where, objs, coord)...)
	checkNamespaces(t, where, objs)
	checkTLS(t, where, objs)
	return lines
}

func TestWiring(t *testing.T) {
	baseObjs := render(t, filepath.Join(k8sDir, "base"))
	base, _ := checkCoordinators(t, "base", baseObjs)
	if base == nil {
		t.Fatal("k8s/base has no coordinator StatefulSet")
	}
	for _, dir := range kustomizationDirs(t) {
		t.Run(filepath.ToSlash(dir), func(t *testing.T) {
			objs := render(t, dir)
			lines := checkWiring(t, dir, objs, base)
			for _, args := range lines {
				checkColonyArgs(t, dir, args)
			}
			t.Logf("%d colony command lines checked", len(lines))
		})
	}
}

// TestWiringRejects breaks the demo overlay in the ways the checks are
// there for, one at a time, and expects each to be reported.
func TestWiringRejects(t *testing.T) {
	dir := filepath.Join(k8sDir, "overlays", "demo")
	good := render(t, dir)
	if errs := failures(func(r reporter) { checkWiring(r, dir, good, nil) }); len(errs) > 0 {
		t.Fatalf("the unbroken overlay fails: %v", errs)
	}
	sts := func(objs []runtime.Object) *appsv1.StatefulSet { return objectsOf[*appsv1.StatefulSet](objs)[0] }
	dep := func(objs []runtime.Object) *appsv1.Deployment { return objectsOf[*appsv1.Deployment](objs)[0] }
	svc := func(objs []runtime.Object, name string) *corev1.Service {
		for _, s := range objectsOf[*corev1.Service](objs) {
			if s.Name == name {
				return s
			}
		}
		panic("no Service " + name)
	}
	setArg := func(args []string, flag, value string) {
		for i, a := range args {
			if strings.HasPrefix(a, "--"+flag+"=") {
				args[i] = "--" + flag + "=" + value
				return
			}
		}
		panic("no --" + flag)
	}
	sidecar := func(objs []runtime.Object) *corev1.Container { return &dep(objs).Spec.Template.Spec.InitContainers[0] }
	for _, tc := range []struct {
		name   string
		break_ func(objs []runtime.Object)
	}{
		{"replicas without peers", func(o []runtime.Object) { n := int32(5); sts(o).Spec.Replicas = &n }},
		{"serviceName of no Service", func(o []runtime.Object) { sts(o).Spec.ServiceName = "colony-peers" }},
		{"client Service to a wrong port", func(o []runtime.Object) { svc(o, "colony").Spec.Ports[0].TargetPort = intstr.FromInt32(7499) }},
		{"peer on the gRPC port", func(o []runtime.Object) {
			setArg(sts(o).Spec.Template.Spec.Containers[0].Args, "peers", "colony-coordinator-0=colony-coordinator-0.colony-coordinator:7400,colony-coordinator-1=colony-coordinator-1.colony-coordinator:7401,colony-coordinator-2=colony-coordinator-2.colony-coordinator:7401")
		}},
		{"metrics port not annotated", func(o []runtime.Object) { sts(o).Spec.Template.Annotations["prometheus.io/port"] = "9090" }},
		{"probe on an unserved port", func(o []runtime.Object) {
			sts(o).Spec.Template.Spec.Containers[0].ReadinessProbe.TCPSocket.Port = intstr.FromInt32(9999)
		}},
		{"PDB selecting nothing", func(o []runtime.Object) {
			objectsOf[*policyv1.PodDisruptionBudget](o)[0].Spec.Selector.MatchLabels = map[string]string{"app": "other"}
		}},
		{"root", func(o []runtime.Object) { z := int64(0); sidecar(o).SecurityContext.RunAsUser = &z }},
		{"sidecar listens where Envoy does not look", func(o []runtime.Object) { setArg(sidecar(o).Args, "listen", "127.0.0.1:7600") }},
		{"a coordinator missing", func(o []runtime.Object) {
			setArg(sidecar(o).Args, "coordinators", "colony-coordinator-0.colony-coordinator:7400,colony-coordinator-1.colony-coordinator:7400")
		}},
		{"address not the app's port", func(o []runtime.Object) { setArg(sidecar(o).Args, "address", "$(POD_IP):9090") }},
		{"undefined variable", func(o []runtime.Object) { setArg(sidecar(o).Args, "instance", "$(HOSTNAME)") }},
		{"coordinator without TLS", func(o []runtime.Object) {
			c := &sts(o).Spec.Template.Spec.Containers[0]
			c.Args = append(slices.DeleteFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--certs-dir=") }), "--insecure")
		}},
		{"node certificate of another identity", func(o []runtime.Object) {
			for _, c := range objectsOf[*cmCertificate](o) {
				if c.Name == "colony-node-colony-coordinator-1" {
					c.Spec.URIs = []string{"spiffe://colony.local/node/colony-coordinator-0"}
				}
			}
		}},
		{"sidecar certificate of another service", func(o []runtime.Object) {
			for _, c := range objectsOf[*cmCertificate](o) {
				if c.Name == "colony-sidecar-checkout" {
					c.Spec.URIs = []string{"spiffe://colony.local/sidecar/payments"}
				}
			}
		}},
		{"raft open to sidecars", func(o []runtime.Object) {
			np := objectsOf[*networkingv1.NetworkPolicy](o)[0]
			np.Spec.Ingress[0].From = append(np.Spec.Ingress[0].From, np.Spec.Ingress[1].From[1])
		}},
		{"sample pods without the sidecar label", func(o []runtime.Object) { delete(dep(o).Spec.Template.Labels, sidecarLabel) }},
		{"sidecar as an app container", func(o []runtime.Object) {
			s := &dep(o).Spec.Template.Spec
			s.Containers = append(s.Containers, s.InitContainers[0])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := make([]runtime.Object, len(good))
			for i, o := range good {
				objs[i] = o.DeepCopyObject()
			}
			tc.break_(objs)
			errs := failures(func(r reporter) { checkWiring(r, dir, objs, nil) })
			if len(errs) == 0 {
				t.Fatal("not reported")
			}
			t.Logf("reported: %s", errs[0])
		})
	}
}
