package deploy_test

import (
	"fmt"
	"path"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The TLS wiring: certificates, where the servers find them, and who may
// reach the coordinators.

// trustDomain is the SPIFFE trust domain the manifests' certificates use.
const trustDomain = "colony.local"

// sidecarLabel marks the pods the coordinators' NetworkPolicy admits to
// the gRPC port.
const sidecarLabel = "colony.dev/sidecar"

// secretItem is one file of a certificate directory: a key of a Secret.
type secretItem struct{ secret, key string }

// certsDirFiles returns the files the read-only mount at dir gives c, by
// file name, from Secret and projected Secret volumes.
func certsDirFiles(spec corev1.PodSpec, c corev1.Container, dir string) (map[string]secretItem, bool) {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) || !m.ReadOnly {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			files := map[string]secretItem{}
			add := func(name string, items []corev1.KeyToPath) {
				for _, it := range items {
					files[it.Path] = secretItem{name, it.Key}
				}
			}
			switch {
			case v.Secret != nil:
				add(v.Secret.SecretName, v.Secret.Items)
			case v.Projected != nil:
				for _, src := range v.Projected.Sources {
					if src.Secret != nil {
						add(src.Secret.Name, src.Secret.Items)
					}
				}
			}
			return files, true
		}
	}
	return nil, false
}

// checkServerCerts checks that server container c of a pod runs with
// --certs-dir (never --insecure), a read-only mount that holds ca.crt and
// role-name.crt/.key for every name, each pair from the Secret of a
// Certificate with that SPIFFE ID.
func checkServerCerts(t reporter, where string, spec corev1.PodSpec, c corev1.Container, role string, names []string, certs map[string]*cmCertificate) {
	t.Helper()
	cmd, err := parseCmdLine(c.Args)
	if err != nil {
		return // reported by the other checks
	}
	if cmd.flags["insecure"] != "" {
		t.Errorf("%s: --insecure: the deployment runs with TLS", where)
	}
	dir := cmd.flags["certs-dir"]
	if dir == "" {
		t.Errorf("%s: no --certs-dir", where)
		return
	}
	files, ok := certsDirFiles(spec, c, dir)
	if !ok {
		t.Errorf("%s: --certs-dir=%s is not a read-only mount of a volume", where, dir)
		return
	}
	if it, ok := files["ca.crt"]; !ok || it.key != "ca.crt" {
		t.Errorf("%s: %s has no ca.crt (the key ca.crt of a certificate's Secret)", where, dir)
	}
	for _, name := range names {
		base := role + "-" + name
		crt, key := files[base+".crt"], files[base+".key"]
		if crt.key != "tls.crt" || key.key != "tls.key" || crt.secret != key.secret {
			t.Errorf("%s: %s has no %s.crt and .key from tls.crt and tls.key of one Secret", where, dir, base)
			continue
		}
		cert, ok := certs[crt.secret]
		if !ok {
			t.Errorf("%s: %s.crt: no Certificate makes the Secret %s", where, base, crt.secret)
			continue
		}
		if want := fmt.Sprintf("spiffe://%s/%s/%s", trustDomain, role, name); !slices.Equal(cert.Spec.URIs, []string{want}) {
			t.Errorf("%s: Certificate %s: uris %v, want [%s] (the identity %s looks for)", where, cert.Name, cert.Spec.URIs, want, base)
		}
	}
}

// checkTLS checks the certificates of every coordinator and sidecar, the
// Issuers they name, and the coordinators' NetworkPolicy.
func checkTLS(t reporter, where string, objs []runtime.Object) {
	t.Helper()
	certs := map[string]*cmCertificate{}
	for _, c := range objectsOf[*cmCertificate](objs) {
		certs[c.Spec.SecretName] = c
	}
	issuers := map[string]*cmIssuer{}
	for _, i := range objectsOf[*cmIssuer](objs) {
		issuers[i.Name] = i
	}
	if len(issuers) > 0 { // a base of its own; the sample app alone has none
		for _, c := range certs {
			if _, ok := issuers[c.Spec.IssuerRef.Name]; !ok || c.Spec.IssuerRef.Kind != "Issuer" {
				t.Errorf("%s: Certificate %s: issuerRef %s/%s is no Issuer here", where, c.Name, c.Spec.IssuerRef.Kind, c.Spec.IssuerRef.Name)
			}
		}
		for _, i := range issuers {
			if i.Spec.CA != nil {
				if ca, ok := certs[i.Spec.CA.SecretName]; !ok || !ca.Spec.IsCA {
					t.Errorf("%s: Issuer %s: its CA Secret %s is made by no CA Certificate", where, i.Name, i.Spec.CA.SecretName)
				}
			}
		}
	}

	for _, sts := range objectsOf[*appsv1.StatefulSet](objs) {
		spec := sts.Spec.Template.Spec
		for _, c := range spec.Containers {
			if len(c.Args) == 0 || c.Args[0] != "coordinator" {
				continue
			}
			replicas := 1
			if sts.Spec.Replicas != nil {
				replicas = int(*sts.Spec.Replicas)
			}
			var ids []string // --id is the pod name
			for i := range replicas {
				ids = append(ids, fmt.Sprintf("%s-%d", sts.Name, i))
			}
			checkServerCerts(t, where+": StatefulSet "+sts.Name, spec, c, "node", ids, certs)
			checkNetworkPolicy(t, where, objs, sts.Spec.Template.Labels)
		}
	}
	for _, d := range objectsOf[*appsv1.Deployment](objs) {
		spec := d.Spec.Template.Spec
		for _, c := range allContainers(spec) {
			if len(c.Args) == 0 || c.Args[0] != "sidecar" {
				continue
			}
			w := where + ": Deployment " + d.Name
			cmd, err := parseCmdLine(c.Args)
			if err != nil {
				continue
			}
			checkServerCerts(t, w, spec, c, "sidecar", []string{cmd.flags["service"]}, certs)
			if d.Spec.Template.Labels[sidecarLabel] != "true" {
				t.Errorf("%s: pods with a sidecar want the label %s=true (the coordinators' NetworkPolicy admits them)", w, sidecarLabel)
			}
		}
	}
}

// checkNetworkPolicy checks that a NetworkPolicy selects the coordinator
// pods (labels) and admits raft only from coordinator pods, the gRPC port
// only from coordinator pods and pods labelled sidecarLabel=true, and
// anything else only on named ports.
func checkNetworkPolicy(t reporter, where string, objs []runtime.Object, labels map[string]string) {
	t.Helper()
	var np *networkingv1.NetworkPolicy
	for _, p := range objectsOf[*networkingv1.NetworkPolicy](objs) {
		if selects(p.Spec.PodSelector.MatchLabels, labels) && len(p.Spec.PodSelector.MatchExpressions) == 0 {
			np = p
		}
	}
	if np == nil {
		t.Errorf("%s: no NetworkPolicy selects the coordinator pods", where)
		return
	}
	w := where + ": NetworkPolicy " + np.Name
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("%s: policyTypes %v: want Ingress", w, np.Spec.PolicyTypes)
	}
	isCoordinator := func(p networkingv1.NetworkPolicyPeer) bool {
		return p.PodSelector != nil && p.NamespaceSelector == nil && p.IPBlock == nil &&
			len(p.PodSelector.MatchLabels) > 0 && selects(p.PodSelector.MatchLabels, labels)
	}
	isSidecar := func(p networkingv1.NetworkPolicyPeer) bool {
		return p.PodSelector != nil && p.NamespaceSelector == nil && p.IPBlock == nil &&
			p.PodSelector.MatchLabels[sidecarLabel] == "true"
	}
	for i, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("%s: ingress rule %d opens every port", w, i+1)
		}
		for _, port := range rule.Ports {
			if port.Port == nil {
				t.Errorf("%s: ingress rule %d opens every port", w, i+1)
				continue
			}
			var ok func(networkingv1.NetworkPolicyPeer) bool
			switch port.Port.String() {
			case "raft", "7401":
				ok = isCoordinator
			case "grpc", "7400":
				ok = func(p networkingv1.NetworkPolicyPeer) bool { return isCoordinator(p) || isSidecar(p) }
			default:
				continue
			}
			if len(rule.From) == 0 {
				t.Errorf("%s: ingress rule %d admits anyone to port %s", w, i+1, port.Port.String())
			}
			for _, p := range rule.From {
				if !ok(p) {
					t.Errorf("%s: ingress rule %d admits %+v to port %s", w, i+1, p, port.Port.String())
				}
			}
		}
	}
}
