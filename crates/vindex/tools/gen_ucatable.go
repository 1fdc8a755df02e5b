// Command gen_ucatable regenerates src/uca_primary.bin, the table of primary
// collation weights that the unicode_loose_md5 vindex hashes.
//
// The weights are those of golang.org/x/text/collate (CLDR 23, Unicode 6.2,
// locale "en", option Loose), the library whose weights Vitess hashes. This
// program only asks that library for the collation key of every code point;
// it shares no code with Vitess.
//
// Run (Debian: apt-get install golang-go golang-golang-x-text-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run tools/gen_ucatable.go > src/uca_primary.bin
//
// Contractions are the canonical decompositions, and the pairs of characters
// of one 128-code-point block of the BMP, whose weights differ from the
// concatenation of their characters' weights.
//
// Format (little-endian): "KSUCA1", then runs, singles and contractions, each
// preceded by a u32 count:
//
//	run:         start u32, end u32 (inclusive), delta u32: weight = cp + delta
//	single:      cp u32, n u8, n weights of 3 bytes each
//	contraction: len u8, len code points u32, n u8, n weights of 3 bytes each
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/collate"
	"golang.org/x/text/language"
	"golang.org/x/text/unicode/norm"
)

var col = collate.New(language.English, collate.Loose)
var buf collate.Buffer

func weights(s string) []uint32 {
	buf.Reset()
	k := col.KeyFromString(&buf, s)
	var out []uint32
	for i := 0; i < len(k); {
		if k[i] < 0x80 {
			out = append(out, uint32(k[i])<<8|uint32(k[i+1]))
			i += 2
		} else {
			out = append(out, uint32(k[i]&0x7f)<<16|uint32(k[i+1])<<8|uint32(k[i+2]))
			i += 3
		}
	}
	return out
}

func same(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func isHangulSyllable(r rune) bool { return r >= 0xAC00 && r <= 0xD7A3 }

type run struct{ start, end, delta uint32 }

func main() {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	per := map[rune][]uint32{}
	var runs []run
	var singles []rune
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		ws := weights(string(r))
		per[r] = ws
		if isHangulSyllable(r) {
			// Checked below: equal to the weights of its jamo.
			continue
		}
		if len(ws) == 1 && ws[0] > uint32(r) {
			d := ws[0] - uint32(r)
			if d == 0x10000 || d == 0x20000 || d == 0x50000 {
				if n := len(runs); n > 0 && runs[n-1].end+1 == uint32(r) && runs[n-1].delta == d {
					runs[n-1].end = uint32(r)
				} else {
					runs = append(runs, run{uint32(r), uint32(r), d})
				}
				continue
			}
		}
		singles = append(singles, r)
	}
	// Hangul syllables must weigh as their canonical decomposition.
	for r := rune(0xAC00); r <= 0xD7A3; r++ {
		var cat []uint32
		for _, c := range norm.NFD.String(string(r)) {
			cat = append(cat, per[c]...)
		}
		if !same(cat, per[r]) {
			fmt.Fprintf(os.Stderr, "hangul %U differs\n", r)
			os.Exit(1)
		}
	}
	// Contractions: canonical decompositions whose weights differ from the
	// concatenation of their characters' weights.
	type contr struct {
		seq []rune
		ws  []uint32
	}
	var contrs []contr
	seen := map[string]bool{}
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if (r >= 0xD800 && r <= 0xDFFF) || isHangulSyllable(r) {
			continue
		}
		d := norm.NFD.String(string(r))
		if utf8.RuneCountInString(d) < 2 || seen[d] {
			continue
		}
		seen[d] = true
		var cat []uint32
		for _, c := range d {
			cat = append(cat, per[c]...)
		}
		ws := weights(d)
		if !same(cat, ws) {
			contrs = append(contrs, contr{[]rune(d), ws})
		}
	}
	// Pairs of printable characters or nonspacing marks of one 128-code-point
	// block of the BMP (Han and Hangul aside) that do not weigh as their two
	// characters do: Thai and Lao prevowels that swap with the next letter,
	// Tibetan, Indic and Tai Viet contractions.
	for base := rune(0); base < 0x10000; base += 0x80 {
		if base >= 0x3400 && base < 0xA000 || base >= 0xAC00 && base < 0xF900 {
			continue
		}
		var rs []rune
		for c := base; c < base+0x80; c++ {
			if unicode.IsPrint(c) || unicode.Is(unicode.Mn, c) {
				rs = append(rs, c)
			}
		}
		for _, a := range rs {
			for _, b := range rs {
				d := string([]rune{a, b})
				if seen[d] {
					continue
				}
				seen[d] = true
				cat := append(append([]uint32{}, per[a]...), per[b]...)
				if ws := weights(d); !same(cat, ws) {
					contrs = append(contrs, contr{[]rune{a, b}, ws})
				}
			}
		}
	}
	u32 := func(v uint32) { binary.Write(w, binary.LittleEndian, v) }
	u24s := func(ws []uint32) {
		w.WriteByte(byte(len(ws)))
		for _, x := range ws {
			w.Write([]byte{byte(x), byte(x >> 8), byte(x >> 16)})
		}
	}
	w.WriteString("KSUCA1")
	u32(uint32(len(runs)))
	for _, r := range runs {
		u32(r.start)
		u32(r.end)
		u32(r.delta)
	}
	u32(uint32(len(singles)))
	for _, r := range singles {
		u32(uint32(r))
		u24s(per[r])
	}
	u32(uint32(len(contrs)))
	for _, c := range contrs {
		w.WriteByte(byte(len(c.seq)))
		for _, r := range c.seq {
			u32(uint32(r))
		}
		u24s(c.ws)
	}
	fmt.Fprintf(os.Stderr, "runs=%d singles=%d contractions=%d\n", len(runs), len(singles), len(contrs))
}
