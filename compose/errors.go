package compose

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v4"
)

// fileError is a compose-go load error located in a compose file.
type fileError struct {
	file string // as shown: relative to the current directory when below it
	line int    // 0: unknown
	msg  string // compose-go's message without the file name
	err  error  // compose-go's error
}

func (e *fileError) Error() string {
	if e.line > 0 {
		return e.file + ":" + strconv.Itoa(e.line) + ": " + e.msg
	}
	return e.file + ": " + e.msg
}

func (e *fileError) Unwrap() error { return e.err }

var (
	yamlLineRE     = regexp.MustCompile(`line (\d+)`)
	interpPathRE   = regexp.MustCompile(`error while interpolating (\S+): `)
	interpFormatRE = regexp.MustCompile(`(?s)invalid interpolation format for (.+?)\.\nYou may need`)
	castValueRE    = regexp.MustCompile(`parsing "([^"]*)"`)
	addlPropRE     = regexp.MustCompile(`additional propert(?:y|ies) '([^']+)'`)
	validatingRE   = regexp.MustCompile(`validating (\S+\.ya?ml): `)
)

// annotate rewrites a compose-go load error as "FILE:LINE: message" when it
// can tell which file (and line) it is about. compose-go names the file for
// schema errors but gives no line; it gives a line but no file for YAML syntax
// errors found while looking for `name:`; it gives neither for interpolation
// and type errors (only the attribute path).
func annotate(err error, configPaths []string) error {
	var files []string
	for _, f := range configPaths {
		if f == "-" {
			continue
		}
		if abs, aerr := filepath.Abs(f); aerr == nil {
			f = abs
		}
		files = append(files, f)
	}
	msg := err.Error()

	// the file compose-go names, if any (longest name wins: a/b.yaml vs b.yaml)
	file := ""
	for _, f := range files {
		if strings.Contains(msg, f) && len(f) > len(file) {
			file = f
		}
	}
	if file == "" {
		// a file compose-go read on its own: include, extends
		if m := validatingRE.FindStringSubmatch(msg); m != nil {
			file = m[1]
			files = append(files, file)
		}
	}
	rest := msg
	if file != "" {
		for _, prefix := range []string{"failed to parse " + file + ": ", "validating " + file + ": "} {
			if i := strings.Index(rest, prefix); i >= 0 {
				rest = rest[:i] + rest[i+len(prefix):]
			}
		}
	}

	line := 0
	switch {
	case strings.HasPrefix(rest, "yaml: ") || strings.Contains(rest, " yaml: "):
		rest = fixParserLines(rest)
		if m := yamlLineRE.FindAllStringSubmatch(rest, -1); len(m) > 0 {
			line, _ = strconv.Atoi(m[len(m)-1][1])
		}
		if file == "" {
			file = firstUnparsable(files)
		}
	case file != "" && strings.Contains(msg, "validating "+file+": "):
		// schema error: "PATH MESSAGE", PATH dotted, empty for the root
		path, text, _ := strings.Cut(rest, " ")
		rest = strings.TrimSpace(rest)
		var parts []string
		if path != "" {
			parts = strings.Split(path, ".")
		}
		if m := addlPropRE.FindStringSubmatch(text); m != nil {
			parts = append(parts, m[1])
		}
		file, line = locateIn(file, files, parts, "")
	default:
		path := ""
		if m := interpPathRE.FindStringSubmatch(msg); m != nil {
			path = m[1]
		} else if m := interpFormatRE.FindStringSubmatch(msg); m != nil {
			path = m[1]
		}
		if path == "" {
			break
		}
		hint := ""
		if m := castValueRE.FindStringSubmatch(msg); m != nil {
			hint = m[1]
		}
		f, l := locateIn(file, files, strings.Split(path, "."), hint)
		if l > 0 {
			file, line = f, l
		}
	}
	if file == "" || (line == 0 && rest == msg) {
		return err // nothing to add
	}
	return &fileError{file: display(file), line: line, msg: rest, err: err}
}

// parserLineOffset is what to add to the line numbers of YAML parser errors:
// go.yaml.in/yaml/v4 v4.0.0-rc.4 prints them 0-based (its scanner errors are
// 1-based). Measured, so that a fixed release needs no change here.
var parserLineOffset = sync.OnceValue(func() int {
	var x any
	err := yaml.Unmarshal([]byte("a:\n  b:\n    c: 1\n   d: 2\n"), &x) // error on line 4
	if err == nil {
		return 0
	}
	m := yamlLineRE.FindAllStringSubmatch(err.Error(), -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	if off := 4 - n; off == 1 {
		return off
	}
	return 0
})

// fixParserLines corrects the line numbers of a YAML parser error message.
func fixParserLines(msg string) string {
	off := parserLineOffset()
	if off == 0 || strings.Contains(msg, "while parsing a tag") || strings.Contains(msg, "while parsing a %TAG") {
		return msg
	}
	parser := false
	for _, s := range []string{"while parsing ", "did not find expected ", "found duplicate %", "found incompatible YAML document"} {
		parser = parser || strings.Contains(msg, s)
	}
	if !parser {
		return msg
	}
	return yamlLineRE.ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(s, "line "))
		return "line " + strconv.Itoa(n+off)
	})
}

// display shortens file to a path relative to the current directory when it
// is below it.
func display(file string) string {
	wd, err := os.Getwd()
	if err != nil {
		return file
	}
	rel, err := filepath.Rel(wd, file)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return file
	}
	return rel
}

// firstUnparsable returns the first file that is not valid YAML.
func firstUnparsable(files []string) string {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return f
			}
		}
	}
	return ""
}

// locateIn finds the line of the attribute at path: in preferred first, then
// in the other files; failing an exact match, the deepest existing parent in
// preferred. It returns the file it found the attribute in.
func locateIn(preferred string, files []string, path []string, hint string) (string, int) {
	order := files
	if preferred != "" {
		order = append([]string{preferred}, files...)
	}
	for _, f := range order {
		if h, ok := locate(f, path, hint); ok {
			return f, h.line
		}
	}
	if preferred != "" {
		if h, _ := locate(preferred, path, hint); h.line > 0 {
			return preferred, h.line
		}
	}
	return preferred, 0
}

type hit struct {
	line  int
	value string
	depth int
}

// locate finds path in the YAML documents of file. Path parts are mapping
// keys, sequence indexes, or "[]" for any item. ok reports an exact match;
// otherwise the deepest partial match is returned. Among exact matches, the
// one whose scalar value equals hint wins.
func locate(file string, path []string, hint string) (best hit, ok bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return hit{}, false
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var exact []hit
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			break
		}
		for _, h := range find(&doc, path, 0) {
			if h.depth == len(path) {
				exact = append(exact, h)
			} else if h.depth > best.depth || best.line == 0 {
				best = h
			}
		}
	}
	if len(exact) == 0 {
		return best, false
	}
	for _, h := range exact {
		if hint != "" && h.value == hint {
			return h, true
		}
	}
	return exact[0], true
}

func find(n *yaml.Node, path []string, depth int) []hit {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return find(n.Content[0], path, depth)
	}
	here := []hit{{line: n.Line, value: n.Value, depth: depth}}
	if len(path) == 0 {
		return here
	}
	var hits []hit
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value != path[0] {
				continue
			}
			if len(path) == 1 {
				value := v.Value
				if v.Kind == yaml.AliasNode && v.Alias != nil {
					value = v.Alias.Value
				}
				return []hit{{line: k.Line, value: value, depth: depth + 1}}
			}
			return find(v, path[1:], depth+1)
		}
	case yaml.SequenceNode:
		if path[0] == "[]" {
			for _, item := range n.Content {
				hits = append(hits, find(item, path[1:], depth+1)...)
			}
		} else if i, err := strconv.Atoi(path[0]); err == nil && i >= 0 && i < len(n.Content) {
			hits = find(n.Content[i], path[1:], depth+1)
		}
	}
	if len(hits) == 0 {
		return here
	}
	return hits
}
