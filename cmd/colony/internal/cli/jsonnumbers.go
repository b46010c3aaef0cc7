package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// marshalJSON is protojson's encoding of m, with two changes for people and
// scripts reading colony's output: 64-bit integers are JSON numbers
// ("term": 2, where protojson writes "2" for the sake of JavaScript's
// 53-bit numbers; Colony's counters stay far below that), and session ids
// are strings in the hex form every other output uses ("0x2a"). Fields keep
// protojson's order.
func marshalJSON(opts protojson.MarshalOptions, m proto.Message) ([]byte, error) {
	b, err := opts.Marshal(m)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out bytes.Buffer
	if err := rewriteMessage(dec, m.ProtoReflect().Descriptor(), &out); err != nil {
		return nil, fmt.Errorf("rewriting protojson: %w", err)
	}
	if !opts.Multiline {
		return out.Bytes(), nil
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, out.Bytes(), "", opts.Indent); err != nil {
		return nil, err
	}
	return ind.Bytes(), nil
}

// sessionIDFields are the fields that hold a session id.
var sessionIDFields = map[protoreflect.Name]bool{"session_id": true, "ephemeral_owner": true}

// rewriteMessage copies the next JSON value, the protojson form of a
// message of type md, to out.
func rewriteMessage(dec *json.Decoder, md protoreflect.MessageDescriptor, out *bytes.Buffer) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return writeRest(dec, tok, out) // a well-known type's own form (Timestamp, Duration, Value)
	}
	out.WriteByte('{')
	for first := true; dec.More(); first = false {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if !first {
			out.WriteByte(',')
		}
		writeJSON(out, key)
		out.WriteByte(':')
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(key))
		}
		if err := rewriteField(dec, fd, out); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return err
	}
	out.WriteByte('}')
	return nil
}

// rewriteField copies the value of field fd (nil: unknown, copied as is).
func rewriteField(dec *json.Decoder, fd protoreflect.FieldDescriptor, out *bytes.Buffer) error {
	switch {
	case fd == nil:
		return copyValue(dec, out)
	case fd.IsMap():
		return rewriteContainer(dec, '{', fd.MapValue(), out)
	case fd.IsList():
		return rewriteContainer(dec, '[', fd, out)
	}
	return rewriteSingle(dec, fd, out)
}

// rewriteContainer copies a list or map whose elements are of field fd.
func rewriteContainer(dec *json.Decoder, open json.Delim, fd protoreflect.FieldDescriptor, out *bytes.Buffer) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != open {
		return writeRest(dec, tok, out) // null
	}
	closeDelim := byte(']')
	if open == '{' {
		closeDelim = '}'
	}
	out.WriteByte(byte(open))
	for first := true; dec.More(); first = false {
		if !first {
			out.WriteByte(',')
		}
		if open == '{' {
			key, err := dec.Token()
			if err != nil {
				return err
			}
			writeJSON(out, key)
			out.WriteByte(':')
		}
		if err := rewriteSingle(dec, fd, out); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	out.WriteByte(closeDelim)
	return nil
}

// rewriteSingle copies one value of field fd's element type.
func rewriteSingle(dec *json.Decoder, fd protoreflect.FieldDescriptor, out *bytes.Buffer) error {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return rewriteMessage(dec, fd.Message(), out)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		s, ok := tok.(string)
		if !ok {
			return writeRest(dec, tok, out)
		}
		if sessionIDFields[fd.Name()] {
			if id, err := strconv.ParseUint(s, 10, 64); err == nil {
				writeJSON(out, FormatSessionID(id))
				return nil
			}
		} else if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			out.WriteString(s)
			return nil
		} else if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			out.WriteString(s)
			return nil
		}
		writeJSON(out, s)
		return nil
	}
	return copyValue(dec, out)
}

// copyValue copies the next JSON value unchanged.
func copyValue(dec *json.Decoder, out *bytes.Buffer) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	out.Write(raw)
	return nil
}

// writeRest writes tok, a scalar already read, or the rest of the object or
// array it opens.
func writeRest(dec *json.Decoder, tok json.Token, out *bytes.Buffer) error {
	d, ok := tok.(json.Delim)
	if !ok {
		writeJSON(out, tok)
		return nil
	}
	out.WriteByte(byte(d))
	closeDelim := byte(']')
	if d == '{' {
		closeDelim = '}'
	}
	for first := true; dec.More(); first = false {
		if !first {
			out.WriteByte(',')
		}
		if d == '{' {
			key, err := dec.Token()
			if err != nil {
				return err
			}
			writeJSON(out, key)
			out.WriteByte(':')
		}
		if err := copyValue(dec, out); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	out.WriteByte(closeDelim)
	return nil
}

// writeJSON writes a scalar token.
func writeJSON(out *bytes.Buffer, v any) {
	if n, ok := v.(json.Number); ok {
		out.WriteString(n.String())
		return
	}
	b, _ := json.Marshal(v) // strings, bools, nil: cannot fail
	out.Write(b)
}
