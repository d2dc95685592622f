package otlp

import "fmt"

// checkJSONDepth refuses a JSON document whose objects and arrays nest
// deeper than max, before any decoder sees it. pdata's JSON decoder
// recurses once per level, also through fields it skips, so 35 KB of
// gzip'd brackets (560,000 levels) cost it 0.85 GB of stack; this scan
// costs one pass over the bytes and no allocation. It counts '{' and '['
// outside strings (honouring backslash escapes) and does not check that
// the document is otherwise valid JSON: the decoder does that.
func checkJSONDepth(b []byte, max int) error {
	depth, inString, escaped := 0, false, false
	for i, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if depth++; depth > max {
				return fmt.Errorf("JSON nested deeper than %d levels at byte %d (limits.max_json_depth)", max, i)
			}
		case '}', ']':
			// A closing bracket never opened is invalid JSON; counted, it
			// would make room for as many extra levels.
			if depth--; depth < 0 {
				return fmt.Errorf("JSON closes a bracket it never opened, at byte %d", i)
			}
		}
	}
	return nil
}
