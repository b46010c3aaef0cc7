package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	kustomizetypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const k8sDir = "k8s"

// k8sDecoder decodes the Kubernetes kinds the manifests use, and
// cert-manager's Issuer and Certificate. Strict: an unknown or duplicated
// field is an error, as with kubectl's --validate=strict.
var k8sDecoder = sync.OnceValue(func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme, addCertManagerToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
})

func decodeStrict(data []byte) (runtime.Object, error) {
	obj, _, err := k8sDecoder().Decode(data, nil, nil)
	return obj, err
}

// kustomizationDirs lists the directories under k8s/ with a kustomization.yaml.
func kustomizationDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(k8sDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no kustomization.yaml under k8s/")
	}
	return dirs
}

// render builds a kustomization as `kubectl apply -k` would and decodes
// every object strictly.
func render(t *testing.T, dir string) []runtime.Object {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []runtime.Object
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s/%s: %v", dir, r.GetKind(), r.GetName(), err)
		}
		obj, err := decodeStrict(y)
		if err != nil {
			t.Errorf("%s: %s/%s: %v", dir, r.GetKind(), r.GetName(), err)
			continue
		}
		objs = append(objs, obj)
	}
	return objs
}

func objectsOf[T runtime.Object](objs []runtime.Object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestKustomizations decodes every kustomization.yaml and every manifest
// file strictly, checks that no manifest under k8s/ is left out of a
// kustomization (and so out of these tests), and renders each one.
func TestKustomizations(t *testing.T) {
	used := map[string]bool{}
	for _, dir := range kustomizationDirs(t) {
		t.Run(filepath.ToSlash(dir), func(t *testing.T) {
			kf := filepath.Join(dir, "kustomization.yaml")
			used[kf] = true
			data, err := os.ReadFile(kf)
			if err != nil {
				t.Fatal(err)
			}
			var k kustomizetypes.Kustomization
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				t.Fatalf("%s: %v", kf, err)
			}
			for _, r := range k.Resources {
				p := filepath.Join(dir, r)
				if st, err := os.Stat(p); err != nil {
					t.Errorf("%s: resource %s: %v", kf, r, err)
					continue
				} else if st.IsDir() {
					continue // another kustomization, tested on its own
				}
				used[p] = true
				decodeFileStrict(t, p)
			}
			for _, g := range k.ConfigMapGenerator {
				for _, f := range g.FileSources {
					if _, p, ok := strings.Cut(f, "="); ok { // key=path
						f = p
					}
					used[filepath.Join(dir, f)] = true
				}
			}
			objs := render(t, dir)
			if len(objs) == 0 {
				t.Fatal("renders nothing")
			}
			for _, o := range objs {
				t.Logf("%T %s", o, objectName(o))
			}
		})
	}
	err := filepath.WalkDir(k8sDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) && !used[p] {
			t.Errorf("%s is in no kustomization (resources or configMapGenerator)", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// decodeFileStrict decodes every document of a manifest file strictly.
func decodeFileStrict(t *testing.T, p string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		if _, err := decodeStrict(doc); err != nil {
			t.Errorf("%s, document %d: %v", p, i+1, err)
		}
	}
}

func objectName(o runtime.Object) string {
	if m, ok := o.(interface {
		GetNamespace() string
		GetName() string
	}); ok {
		if m.GetNamespace() != "" {
			return m.GetNamespace() + "/" + m.GetName()
		}
		return m.GetName()
	}
	return "?"
}

func TestStrictDecodingRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":               "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: [{port: 1, targetport: 2}]\n",
		"duplicate field":             "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  clusterIP: None\n  clusterIP: None\n",
		"unknown kind":                "apiVersion: v1\nkind: Servce\nmetadata: {name: a}\n",
		"cert-manager misspelt field": "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: a}\nspec: {secretName: a, dnsName: [x], issuerRef: {name: ca}}\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}
