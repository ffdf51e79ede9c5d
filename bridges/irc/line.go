package irc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

// maxLine is the longest line the server relays, CR LF included (RFC 1459
// and RFC 2812; message tags are counted separately by IRCv3).
const maxLine = 512

// IRC formatting codes kept when formatting is "keep".
const (
	fmtBold      = 0x02
	fmtColor     = 0x03
	fmtHexColor  = 0x04
	fmtReset     = 0x0f
	fmtMonospace = 0x11
	fmtReverse   = 0x16
	fmtItalic    = 0x1d
	fmtStrike    = 0x1e
	fmtUnderline = 0x1f
)

func isFormatting(r rune) bool {
	switch r {
	case fmtBold, fmtColor, fmtHexColor, fmtReset, fmtMonospace, fmtReverse, fmtItalic, fmtStrike, fmtUnderline:
		return true
	}
	return false
}

// repairUTF8 returns s as valid UTF-8: a byte that is not part of a valid
// sequence is taken as the Latin-1 character of that value, which is what
// legacy IRC clients (and most non-UTF-8 feed writers) mean by it.
func repairUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(rune(s[i]))
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// cleanText makes text safe for the trailing parameter of any command: it
// repairs invalid UTF-8, turns line breaks (CR LF, CR, LF, U+2028, U+2029)
// into "\n" and tabs into spaces, drops NUL, every other C0 and C1 control
// and DEL (so \x01 cannot start a CTCP request), drops invisible format
// characters (Unicode category Cf: bidi overrides, embeddings and
// isolates, zero-width spaces, soft hyphens, tag characters; they can
// make a line read other than it is) except a zero-width joiner inside an
// emoji sequence, and drops IRC formatting codes (with a colour code's
// digits) unless keepFormatting is set.
func cleanText(s string, keepFormatting bool) string {
	s = repairUTF8(s)
	joiners := emojiJoiners(s)
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		switch {
		case r == '\r':
			if i < len(s) && s[i] == '\n' {
				i++
			}
			b.WriteByte('\n')
		case r == '\n', r == 0x2028, r == 0x2029:
			b.WriteByte('\n')
		case r == '\t':
			b.WriteByte(' ')
		case isFormatting(r):
			if keepFormatting {
				b.WriteRune(r)
			} else if r == fmtColor {
				i += colorArgLen(s[i:], isDigit, 2)
			} else if r == fmtHexColor {
				i += colorArgLen(s[i:], isHex, 6)
			}
		case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
			// other controls never reach the wire
		case unicode.Is(unicode.Cf, r):
			if r == zwj && joiners[i-n] {
				b.WriteRune(r)
			}
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// zwj is U+200D ZERO WIDTH JOINER, which joins emoji into one picture
// (a family, a flag, a person with a skin tone doing something).
const zwj = '\u200d'

// emojiJoiners returns the byte offsets of the zero-width joiners of s
// that stand inside an emoji ZWJ sequence. By the Unicode grapheme
// cluster rules (UAX #29) a ZWJ is followed within its cluster by a
// character other than a mark or a format character only in such a
// sequence (GB11: an emoji, optional extenders, ZWJ, an emoji).
func emojiJoiners(s string) map[int]bool {
	if !strings.ContainsRune(s, zwj) {
		return nil
	}
	var at map[int]bool
	state, offset := -1, 0
	for s != "" {
		var cluster string
		cluster, s, _, state = uniseg.FirstGraphemeClusterInString(s, state)
		for i, r := range cluster {
			next, _ := utf8.DecodeRuneInString(cluster[i+utf8.RuneLen(r):])
			if r == zwj && next != utf8.RuneError && !unicode.In(next, unicode.Mn, unicode.Me, unicode.Mc, unicode.Cf) {
				if at == nil {
					at = map[int]bool{}
				}
				at[offset+i] = true
			}
		}
		offset += len(cluster)
	}
	return at
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || (c|0x20) >= 'a' && (c|0x20) <= 'f' }

// colorArgLen returns the length of a colour code's arguments at the start
// of s: a foreground of up to width digits, optionally ",background".
func colorArgLen(s string, ok func(byte) bool, width int) int {
	run := func(s string) int {
		n := 0
		for n < width && n < len(s) && ok(s[n]) {
			n++
		}
		return n
	}
	fg := run(s)
	if fg == 0 {
		return 0
	}
	if fg < len(s) && s[fg] == ',' {
		if bg := run(s[fg+1:]); bg > 0 {
			return fg + 1 + bg
		}
	}
	return fg
}

// minBudget is the least room for text a message line must leave; it
// also leaves room for the "… (+N more)" suffix.
const minBudget = 64

// wire holds what the line builder needs to know about the connection.
type wire struct {
	// prefixLen is the length of ":nick!user@host " as the server relays
	// the bot's messages (the worst case until the real one is known).
	prefixLen int
	// keepFormatting keeps IRC formatting codes in message text.
	keepFormatting bool
	// maxLines caps the lines one message may take.
	maxLines int
}

// errLine reports a command that cannot be sent as one valid line.
var errLine = errors.New("not a valid IRC line")

// buildLines is the one function every outgoing line goes through. It
// returns the wire lines (CR LF included) for a command with middle
// parameters params and, when text is non-empty, a trailing parameter.
//
// Middle parameters must be non-empty, must not start with ':' and must not
// contain spaces or control characters. The text is cleaned (cleanText).
// PRIVMSG and NOTICE text is split on line breaks, then on word boundaries
// (or rune boundaries for words too long for a line) so that every line the
// server relays, with the bot's prefix, fits in 512 bytes; when it takes
// more than w.maxLines lines, the last line shown ends with
// "… (+N more)" and link (when link is a clean URL). Any other command must
// fit in one line.
func (w wire) buildLines(cmd string, params []string, text, link string) ([]string, error) {
	head := cmd
	for _, p := range params {
		if p == "" || p[0] == ':' || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("%s parameter %q: %w", cmd, p, errLine)
		}
		head += " " + p
	}
	if cmd != "PRIVMSG" && cmd != "NOTICE" {
		line := head
		if text != "" {
			line += " :" + strings.ReplaceAll(cleanText(text, false), "\n", " ")
		}
		if len(line)+2 > maxLine {
			return nil, fmt.Errorf("%s line of %d bytes: %w", cmd, len(line)+2, errLine)
		}
		return []string{line + "\r\n"}, nil
	}
	budget := maxLine - 2 - w.prefixLen - len(head) - 2 // " :" before the text
	if budget < minBudget {
		return nil, fmt.Errorf("%s to %s: no room for text: %w", cmd, params, errLine)
	}
	var chunks []string
	for _, para := range strings.Split(cleanText(text, w.keepFormatting), "\n") {
		chunks = append(chunks, splitText(para, budget)...)
	}
	if w.maxLines > 0 && len(chunks) > w.maxLines {
		chunks = capChunks(chunks, w.maxLines, budget, link)
	}
	out := make([]string, len(chunks))
	for i, c := range chunks {
		out[i] = head + " :" + c + "\r\n"
	}
	return out, nil
}

// capChunks keeps max chunks, the last one cut to make room for
// "… (+N more)" and the link (the link is dropped when it leaves too
// little room).
func capChunks(chunks []string, max, budget int, link string) []string {
	more := len(chunks) - max
	suffix := " … (+" + strconv.Itoa(more) + " more)"
	if link = cleanLink(link); link != "" && budget-len(suffix)-len(link)-1 >= budget/2 {
		suffix += " " + link
	}
	out := chunks[:max:max]
	last := splitText(out[max-1], budget-len(suffix))
	out[max-1] = last[0] + suffix
	return out
}

// cleanLink returns link when it is an http(s) URL without spaces or
// controls, else "".
func cleanLink(link string) string {
	if (!strings.HasPrefix(link, "https://") && !strings.HasPrefix(link, "http://")) ||
		!utf8.ValidString(link) || strings.ContainsFunc(link, func(r rune) bool { return r <= ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) }) {
		return ""
	}
	return link
}

// splitText splits one line of clean text into pieces of at most budget
// bytes: at the last space that fits (spaces around the cut are dropped),
// or at the last rune boundary when a word is longer than a line. Pieces
// of only spaces are dropped.
func splitText(s string, budget int) []string {
	var out []string
	for {
		s = strings.TrimLeft(s, " ")
		if len(s) <= budget {
			if s = strings.TrimRight(s, " "); s != "" {
				out = append(out, s)
			}
			return out
		}
		if cut := strings.LastIndexByte(s[:budget+1], ' '); cut > 0 {
			out = append(out, strings.TrimRight(s[:cut], " "))
			s = s[cut+1:]
			continue
		}
		cut := budget
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		// never next to a joiner: a ZWJ that ends or starts a line
		// joins nothing, and the next clean would drop it
		for cut > 0 && (strings.HasPrefix(s[cut:], string(zwj)) || strings.HasSuffix(s[:cut], string(zwj))) {
			cut--
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
		}
		if cut == 0 { // a line of joined emoji only: cut anyway
			cut = budget
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
}

// casemap folds names for comparison under the server's CASEMAPPING.
type casemap string

// fold returns name in lower case: ASCII letters always, and for
// rfc1459 (the default) also []\~ as {}|^ (strict-rfc1459: not ~).
func (m casemap) fold(name string) string {
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 32
		case m == "ascii":
		case c == '[' || c == ']' || c == '\\':
			b[i] = c + 32
		case c == '~' && m != "strict-rfc1459":
			b[i] = '^'
		}
	}
	return string(b)
}

// validChannel checks a channel name: it starts with one of chantypes, has
// at most maxLen bytes of valid UTF-8, and holds no space, comma, colon,
// BEL or other control character.
func validChannel(name, chantypes string, maxLen int) error {
	if name == "" || !strings.ContainsRune(chantypes, rune(name[0])) {
		return fmt.Errorf("channel %q must start with one of %q", name, chantypes)
	}
	if len(name) > maxLen {
		return fmt.Errorf("channel %q is %d bytes, over the server's limit of %d", name, len(name), maxLen)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("channel %q is not valid UTF-8", name)
	}
	if i := strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == ',' || r == ':' || r == 0x7f }); i >= 0 {
		return fmt.Errorf("channel %q holds a space, comma, colon or control character at byte %d", name, i)
	}
	return nil
}

// autoChannel derives a channel name from a feed name: prefix, then the
// feed name in lower case with every character outside a-z, 0-9, '.', '_'
// and '-' replaced by '-' (runs collapsed), cut to maxLen bytes. It
// returns "" when nothing usable is left.
func autoChannel(prefix, feed string, maxLen int) string {
	var b strings.Builder
	b.WriteString(prefix)
	dash := true // no leading '-'
	for _, r := range strings.ToLower(feed) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	name := b.String()
	if len(name) > maxLen {
		name = name[:maxLen]
	}
	name = strings.TrimRight(name, "-")
	if len(name) <= len(prefix) {
		return ""
	}
	return name
}
