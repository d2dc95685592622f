package configs

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// lineError is an error at a known line; decodeError turns it into a field path.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func typeOf(v any) reflect.Type { return reflect.TypeOf(v) }

// checkKeys walks the document alongside the Go type and rejects keys the
// type does not have. yaml.v3's KnownFields does not reach through custom
// unmarshalers (which set our defaults) and does not name the field path.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // a type error the decoder reports
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				ft, ok = fields[anyKey]
			}
			if !ok {
				return fmt.Errorf("%s: unknown field %q (line %d)", join(path, k.Value), k.Value, k.Line)
			}
			if err := checkKeys(v, ft, join(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range n.Content {
			if err := checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	}
	return nil
}

// anyKey stands in yamlFields for the keys of an inline map.
const anyKey = "\x00any"

// yamlFields maps the YAML keys of a struct (following inline fields) to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Map { // any key, with the map's value type
				out[anyKey] = ft.Elem()
				continue
			}
			for k, v := range yamlFields(ft) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	lineRe = regexp.MustCompile(`line (\d+): (.*)`)
	typeRe = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (.+)$")
)

// decodeError rewrites yaml.v3's "line N: cannot unmarshal !!str `x` into
// float64" into "path: expected a number, got a string `x` (line N)".
func decodeError(doc *yaml.Node, err error) error {
	var msgs []string
	var te *yaml.TypeError
	var le *lineError
	switch {
	case errors.As(err, &le):
		msgs = []string{le.Error()}
	case errors.As(err, &te):
		msgs = te.Errors
	default:
		msgs = []string{err.Error()}
	}
	m := lineRe.FindStringSubmatch(msgs[0])
	if m == nil {
		return errors.New(msgs[0])
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	match := func(n *yaml.Node) bool { return n.Line == line && n.Kind == yaml.ScalarNode }
	if t := typeRe.FindStringSubmatch(msg); t != nil {
		tag, value, goType := t[1], strings.TrimSuffix(t[2], "..."), t[3]
		match = func(n *yaml.Node) bool {
			if n.Line != line {
				return false
			}
			switch tag {
			case "map":
				return n.Kind == yaml.MappingNode
			case "seq":
				return n.Kind == yaml.SequenceNode
			}
			return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!"+tag && strings.HasPrefix(n.Value, value)
		}
		got := map[string]string{"map": "a mapping", "seq": "a list", "str": "a string", "int": "an integer",
			"float": "a number", "bool": "true or false", "null": "nothing"}[tag]
		if got == "" {
			got = tag
		}
		if t[2] != "" {
			got += " `" + t[2] + "`"
		}
		msg = "expected " + describe(goType) + ", got " + got
	}
	if p, ok := findPath(doc, "", match); ok && p != "" {
		return fmt.Errorf("%s: %s (line %d)", p, msg, line)
	}
	return fmt.Errorf("%s (line %d)", msg, line)
}

// describe names a Go type the way a configuration's reader thinks of it.
func describe(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	}
	return "a mapping"
}

// findPath returns the field path of the first node that match accepts,
// depth first; a mapping's key is tried before its value.
func findPath(n *yaml.Node, path string, match func(*yaml.Node) bool) (string, bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p, ok := findPath(c, path, match); ok {
				return p, true
			}
		}
		return "", false
	case yaml.MappingNode:
		if match(n) && path != "" {
			return path, true
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := join(path, n.Content[i].Value)
			if match(n.Content[i]) {
				return k, true
			}
			if p, ok := findPath(n.Content[i+1], k, match); ok {
				return p, true
			}
		}
	case yaml.SequenceNode:
		if match(n) && path != "" {
			return path, true
		}
		for i, c := range n.Content {
			if p, ok := findPath(c, fmt.Sprintf("%s[%d]", path, i), match); ok {
				return p, true
			}
		}
	default:
		if match(n) {
			return path, true
		}
	}
	return "", false
}

// lineOf returns the line of the node at path, or of its nearest existing
// parent when the field is absent (a missing required field).
func lineOf(doc *yaml.Node, path string) int {
	n := doc
	line := doc.Line
	for _, seg := range splitPath(path) {
		var next *yaml.Node
		if idx, err := strconv.Atoi(seg); err == nil && n.Kind == yaml.SequenceNode {
			if idx < len(n.Content) {
				next = n.Content[idx]
				line = next.Line
			}
		} else if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg {
					next = n.Content[i+1]
					line = n.Content[i].Line
					break
				}
			}
		}
		if next == nil {
			return line
		}
		n = next
		if n.Kind != yaml.MappingNode || line == 0 {
			line = n.Line
		}
	}
	return line
}

// splitPath turns "guards[0].signals[1].name" into [guards 0 signals 1 name].
func splitPath(path string) []string {
	path = strings.NewReplacer("[", ".", "]", "").Replace(path)
	return strings.Split(path, ".")
}
