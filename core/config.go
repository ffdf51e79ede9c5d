package core

import (
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	goyaml "github.com/goccy/go-yaml"
	goparser "github.com/goccy/go-yaml/parser"
	"gopkg.in/yaml.v3"
)

// Section is one part of the config file (the whole file, or one adapter's
// section), decoded strictly: an unknown key, a wrong type or a bad value is
// an error naming the file, the line and the key.
type Section struct {
	// File is the config file's name, for messages.
	File string
	// Path is the section's dotted key path ("" for the whole file).
	Path string
	// Node is the section's YAML node; nil when the section is absent.
	Node *yaml.Node

	lines map[string]int // key path -> line, filled by Decode
}

// Present reports whether the section appears in the file.
func (s *Section) Present() bool { return s != nil && s.Node != nil }

// Sub returns the section for a key of this one (nil Node when absent).
func (s *Section) Sub(key string) *Section {
	sub := &Section{File: s.File, Path: joinPath(s.Path, key), lines: s.lines}
	if n := mapping(s.Node); n != nil {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				sub.Node = n.Content[i+1]
			}
		}
	}
	return sub
}

// Decode decodes the section into out (a pointer to a struct holding the
// defaults), strictly. Fields of type *yaml.Node are left raw, for
// sections decoded later by their owners.
func (s *Section) Decode(out any) error {
	if s.lines == nil {
		s.lines = map[string]int{}
	}
	if s.Node == nil {
		return nil
	}
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("decode %s: want a non-nil pointer", s.Path)
	}
	return s.decode(s.Node, v.Elem(), s.Path)
}

// Errorf returns an error about key (relative to the section) prefixed
// with the file, the key's line when known, and its full path.
func (s *Section) Errorf(key, format string, args ...any) error {
	path := joinPath(s.Path, key)
	return fmt.Errorf("%s: %s", s.where(path), fmt.Sprintf(format, args...))
}

func (s *Section) where(path string) string {
	line := s.lines[path]
	if line == 0 && s.Node != nil && path == s.Path {
		line = s.Node.Line
	}
	if line == 0 {
		return fmt.Sprintf("%s: %s", s.File, path)
	}
	return fmt.Sprintf("%s:%d: %s", s.File, line, path)
}

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b
	}
	return a + "." + b
}

// resolve follows document and alias nodes to the value they hold (nil
// for an empty document).
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && (n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) == 0 {
			return nil
		} else {
			n = n.Content[0]
		}
	}
	return n
}

func mapping(n *yaml.Node) *yaml.Node {
	if n = resolve(n); n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	return n
}

var (
	nodeType        = reflect.TypeFor[yaml.Node]()
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (s *Section) decode(n *yaml.Node, v reflect.Value, path string) error {
	if n = resolve(n); n == nil {
		return nil
	}
	if _, seen := s.lines[path]; !seen {
		s.lines[path] = n.Line
	}
	t := v.Type()
	switch {
	case t == nodeType:
		v.Set(reflect.ValueOf(*n))
		return nil
	case t.Kind() == reflect.Pointer && t.Elem() == nodeType:
		v.Set(reflect.ValueOf(n))
		return nil
	case reflect.PointerTo(t).Implements(unmarshalerType), reflect.PointerTo(t).Implements(textType):
		if err := n.Decode(v.Addr().Interface()); err != nil {
			return fmt.Errorf("%s: %s", s.where(path), cleanYAMLError(err))
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		if n.Tag == "!!null" {
			v.SetZero()
			return nil
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		return s.decode(n, v.Elem(), path)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: must be a mapping of keys (%s)", s.where(path), strings.Join(structKeys(t), ", "))
		}
		fields := map[string]reflect.Value{}
		collectFields(v, fields)
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i].Value, n.Content[i+1]
			kp := joinPath(path, key)
			s.lines[kp] = n.Content[i].Line
			f, ok := fields[key]
			if !ok {
				errs = append(errs, fmt.Errorf("%s:%d: %s: unknown key %q (allowed: %s)",
					s.File, n.Content[i].Line, kp, key, strings.Join(structKeys(t), ", ")))
				continue
			}
			if err := s.decode(val, f, kp); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case reflect.Slice:
		if n.Tag == "!!null" {
			v.SetZero()
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: must be a list (- item per line, or [a, b])", s.where(path))
		}
		out := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		var errs []error
		for i, item := range n.Content {
			if err := s.decode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				errs = append(errs, err)
			}
		}
		v.Set(out)
		return errors.Join(errs...)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: must be a mapping", s.where(path))
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(t))
		}
		var errs []error
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := reflect.New(t.Key()).Elem()
			if err := s.decode(n.Content[i], k, path); err != nil {
				errs = append(errs, err)
				continue
			}
			e := reflect.New(t.Elem()).Elem()
			if err := s.decode(n.Content[i+1], e, joinPath(path, n.Content[i].Value)); err != nil {
				errs = append(errs, err)
				continue
			}
			v.SetMapIndex(k, e)
		}
		return errors.Join(errs...)
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s: must be %s, not a %s", s.where(path), describeType(t), kindName(n.Kind))
	}
	if t == durationType { // time.ParseDuration also takes a bare 0
		d, err := time.ParseDuration(n.Value)
		if err != nil {
			return fmt.Errorf("%s: %q is not %s", s.where(path), n.Value, describeType(t))
		}
		v.SetInt(int64(d))
		return nil
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		return fmt.Errorf("%s: %q is not %s", s.where(path), n.Value, describeType(t))
	}
	return nil
}

// collectFields maps yaml keys to the struct's settable fields, following
// embedded structs and ",inline".
func collectFields(v reflect.Value, out map[string]reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if (f.Anonymous && name == "") || strings.Contains(opts, "inline") {
			fv := v.Field(i)
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					fv.Set(reflect.New(f.Type.Elem()))
				}
				fv = fv.Elem()
			}
			collectFields(fv, out)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = v.Field(i)
	}
}

func structKeys(t reflect.Type) []string {
	m := map[string]reflect.Value{}
	collectFields(reflect.New(t).Elem(), m)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func describeType(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 0, 500ms, 10s or 1h30m"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a " + t.String()
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

func cleanYAMLError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n  ")
	return strings.TrimPrefix(msg, "yaml: ")
}

// UnsetEnvError is a ${NAME} reference to a variable the environment does
// not set; the value it was in reads as empty, so other complaints about
// the same line follow from it (cmd/bridge leaves them out).
type UnsetEnvError struct {
	File string
	Line int
	Name string
}

func (e *UnsetEnvError) Error() string {
	return fmt.Sprintf("%s:%d: ${%s} is not set in the environment (set it, or write ${%s:-default})", e.File, e.Line, e.Name, e.Name)
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${NAME} (and ${NAME:-default}) in every scalar of the
// tree with the environment's value; an unset variable without a default
// is an error naming the file and line. "$$" is a literal "$" (in the file
// only: values from the environment are used as they are). A plain scalar
// that held a reference is typed again after the replacement, so that
// `enabled: ${FLAG}` reads as a bool.
func ExpandEnv(file string, n *yaml.Node) error {
	if n == nil {
		return nil
	}
	var errs []error
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "$") {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			if ref == "$$" {
				return "$"
			}
			m := envRef.FindStringSubmatch(ref)
			if v, ok := os.LookupEnv(m[1]); ok {
				return v
			}
			if m[2] != "" {
				return m[3]
			}
			errs = append(errs, &UnsetEnvError{File: file, Line: n.Line, Name: m[1]})
			return ""
		})
		if n.Style == 0 {
			n.Tag = "" // resolve the type again from the new value
		}
	}
	for _, c := range n.Content {
		if err := ExpandEnv(file, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ParseYAML parses a config document and expands environment references.
// A syntax error names the line where the problem is and shows it (nil
// Section). Unset variables are UnsetEnvErrors, returned with the Section,
// so that the rest of the file is still checked.
func ParseYAML(file string, data []byte) (*Section, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, syntaxError(file, data, err)
	}
	envErr := ExpandEnv(file, &doc)
	root := &doc
	if doc.Kind == 0 { // empty file
		root = nil
	} else if m := mapping(&doc); m == nil {
		return nil, errors.Join(envErr, fmt.Errorf("%s:%d: the config must be a mapping of sections", file, doc.Line))
	}
	return &Section{File: file, Node: root, lines: map[string]int{}}, envErr
}

// syntaxError describes a document yaml.v3 cannot parse. yaml.v3 often
// names the line where the enclosing construct began (an unclosed '['
// two lines up), or none; goccy/go-yaml's parser points at the token
// where the problem is, so its position is used, with that line shown.
func syntaxError(file string, data []byte, v3err error) error {
	_, perr := goparser.ParseBytes(data, 0)
	var ge goyaml.Error
	if perr == nil || !errors.As(perr, &ge) || ge.GetToken() == nil {
		return fmt.Errorf("%s: YAML syntax error: %s", file, cleanYAMLError(v3err))
	}
	pos := ge.GetToken().Position
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if pos.Line < 1 || pos.Line > len(lines) {
		return fmt.Errorf("%s: YAML syntax error: %s", file, ge.GetMessage())
	}
	// the line with the problem, marked, between its neighbours: the
	// culprit is sometimes the line before (an unclosed bracket) or after
	var b strings.Builder
	for n := max(1, pos.Line-1); n <= min(len(lines), pos.Line+1); n++ {
		mark := "  "
		if n == pos.Line {
			mark = "> "
		}
		text := strings.ReplaceAll(strings.TrimRight(lines[n-1], "\r"), "\t", "→") // a tab is a frequent culprit: make it visible
		fmt.Fprintf(&b, "\n    %s%d | %s", mark, n, text)
		if n == pos.Line && pos.Column >= 1 && pos.Column <= len([]rune(text))+1 {
			fmt.Fprintf(&b, "\n      %s | %s^", strings.Repeat(" ", len(fmt.Sprint(n))), strings.Repeat(" ", pos.Column-1))
		}
	}
	msg := strings.ReplaceAll(ge.GetMessage(), "\t", `\t`)
	return fmt.Errorf("%s:%d: YAML syntax error: %s%s", file, pos.Line, msg, b.String())
}
