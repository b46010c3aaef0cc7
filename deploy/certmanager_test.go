package deploy_test

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The part of cert-manager's API (cert-manager.io/v1) the manifests use,
// so that they decode as strictly as the built-in kinds: a misspelt field
// fails. Field names follow cert-manager's v1 types; extend them when a
// manifest needs more.

var certManagerV1 = schema.GroupVersion{Group: "cert-manager.io", Version: "v1"}

func addCertManagerToScheme(s *runtime.Scheme) error {
	s.AddKnownTypeWithName(certManagerV1.WithKind("Issuer"), &cmIssuer{})
	s.AddKnownTypeWithName(certManagerV1.WithKind("Certificate"), &cmCertificate{})
	return nil
}

// cmIssuer is a cert-manager Issuer: self-signed, or signing with a CA in
// a Secret.
type cmIssuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

func (i *cmIssuer) DeepCopyObject() runtime.Object {
	c := *i
	i.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

// cmCertificate is a cert-manager Certificate.
type cmCertificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              cmCertificateSpec `json:"spec"`
}

type cmCertificateSpec struct {
	SecretName  string           `json:"secretName"`
	CommonName  string           `json:"commonName,omitempty"`
	IsCA        bool             `json:"isCA,omitempty"`
	URIs        []string         `json:"uris,omitempty"`
	DNSNames    []string         `json:"dnsNames,omitempty"`
	IPAddresses []string         `json:"ipAddresses,omitempty"`
	Usages      []string         `json:"usages,omitempty"`
	Duration    *metav1.Duration `json:"duration,omitempty"`
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
	PrivateKey  *struct {
		Algorithm      string `json:"algorithm,omitempty"`
		Size           int    `json:"size,omitempty"`
		RotationPolicy string `json:"rotationPolicy,omitempty"`
	} `json:"privateKey,omitempty"`
	IssuerRef struct {
		Name  string `json:"name"`
		Kind  string `json:"kind,omitempty"`
		Group string `json:"group,omitempty"`
	} `json:"issuerRef"`
}

func (c *cmCertificate) DeepCopyObject() runtime.Object {
	out := *c
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}
