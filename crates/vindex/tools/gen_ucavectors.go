// Command gen_ucavectors writes tests/data/uca_vectors.txt: strings and the
// collation key golang.org/x/text/collate gives them (locale "en", Loose),
// the weights the unicode_loose_md5 vindex must reproduce. One line per
// case: hex of the UTF-8 input, a tab, hex of the key.
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run tools/gen_ucavectors.go > tests/data/uca_vectors.txt
package main

import (
	"fmt"
	"math/rand"
	"unicode"

	"golang.org/x/text/collate"
	"golang.org/x/text/language"
)

func main() {
	col := collate.New(language.English, collate.Loose)
	var buf collate.Buffer
	fixed := []string{
		"Test", "TEST", "Te\u0301st", "Tést", "Bést", " Test", "Test\t", "TéstLooong", "T", "",
		"straße", "STRASSE", "Æsir", "æsir", "Œuvre", "ﬁne", "ｆｕｌｌ", "Ångström", "Ørsted",
		"Йод", "И\u0306од", "йод", "ёлка", "Ёлка", "Ўзбек", "Ї", "Αθήνα", "ΑΘΗΝΑ", "ά",
		"한국어", "한", "中文字符", "日本語テキスト", "ｶﾀｶﾅ", "カタカナ", "ひらがな",
		"العربية", "עברית", "हिन्दी", "ไทย", "เกม", "ລາວ", "ᏣᎳᎩ", "😀🎉", "\U00020000\U0002A6D6",
		"a\u0308", "ä", "A\u030A", "Å", "ǅ", "ǆ", "Ǆ", "ℌ", "①", "½", "x\u200by", "tab\there",
		"new\nline", "nul\x00byte", "1234567890", "-42", "3.14", "foo@example.com", "Ĳssel", "ĳ",
		"ŉ", "Ŀl", "ŀl", "Ǳ", "ᾈ", "ﬀ", "Ⅻ", "ß", "ẞ", "ſ", "\u0345", "ᴬ", "ₐ",
	}
	for _, s := range fixed {
		buf.Reset()
		fmt.Printf("%x\t%x\n", s, col.KeyFromString(&buf, s))
	}
	// Every pair of one block that does not weigh as its two characters.
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
				s := string([]rune{a, b})
				buf.Reset()
				k := string(col.KeyFromString(&buf, s))
				buf.Reset()
				ka := string(col.KeyFromString(&buf, string(a)))
				buf.Reset()
				kb := string(col.KeyFromString(&buf, string(b)))
				if k != ka+kb {
					fmt.Printf("%x\t%x\n", s, k)
				}
			}
		}
	}
	blocks := [][2]rune{
		{0x20, 0x7e}, {0xa0, 0x24f}, {0x250, 0x2ff}, {0x300, 0x36f}, {0x370, 0x3ff}, {0x400, 0x52f},
		{0x530, 0x58f}, {0x590, 0x5ff}, {0x600, 0x6ff}, {0x900, 0x97f}, {0xe00, 0xe7f}, {0xe80, 0xeff},
		{0x1100, 0x11ff}, {0x1e00, 0x1fff}, {0x2000, 0x2bff}, {0x3040, 0x30ff}, {0x3400, 0x4dbf},
		{0x4e00, 0x9fff}, {0xac00, 0xd7a3}, {0xf900, 0xfaff}, {0xfb00, 0xfdff}, {0xfe00, 0xffef},
		{0x10000, 0x1ffff}, {0x20000, 0x2ffff}, {0xe0000, 0xe01ef},
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 400; i++ {
		n := 1 + r.Intn(8)
		var rs []rune
		for j := 0; j < n; j++ {
			var b [2]rune
			if r.Intn(3) == 0 {
				b = blocks[r.Intn(len(blocks))]
			} else {
				b = blocks[r.Intn(5)] // mostly Latin, Greek, Cyrillic, combining
			}
			c := b[0] + rune(r.Intn(int(b[1]-b[0]+1)))
			if c >= 0xd800 && c <= 0xdfff {
				c = 'x'
			}
			rs = append(rs, c)
		}
		s := string(rs)
		buf.Reset()
		fmt.Printf("%x\t%x\n", s, col.KeyFromString(&buf, s))
	}
}
