// Package envoycheck checks Envoy configuration the way Envoy would load it,
// for the tests of what Colony ships for Envoy (deploy/, examples/): strict
// decoding into Envoy's v3 protos and protoc-gen-validate rules applied to
// every typed config, since Envoy itself cannot run on every machine.
package envoycheck

import (
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// DecodeBootstrap decodes an Envoy bootstrap (YAML or JSON) strictly, so an
// unknown field is an error, and validates it with ValidateDeep.
func DecodeBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("not an Envoy v3 bootstrap: %w", err)
	}
	if err := ValidateDeep(&b); err != nil {
		return nil, fmt.Errorf("invalid: %w", err)
	}
	return &b, nil
}

// ValidateDeep runs ValidateAll on m and on every message packed in an Any
// inside it, recursively: ValidateAll does not look into typed configs,
// which Envoy validates when it loads them.
func ValidateDeep(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	var err error
	walkAnys(m.ProtoReflect(), func(a *anypb.Any) {
		if err != nil {
			return
		}
		inner, e := a.UnmarshalNew()
		if e != nil {
			err = fmt.Errorf("typed config %s: %w", a.GetTypeUrl(), e)
			return
		}
		err = ValidateDeep(inner)
	})
	return err
}

// walkAnys calls fn on every Any in m (not looking inside them).
func walkAnys(m protoreflect.Message, fn func(*anypb.Any)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		fn(a)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				walkAnys(v.List().Get(i).Message(), fn)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walkAnys(mv.Message(), fn)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walkAnys(v.Message(), fn)
		}
		return true
	})
}
