package segment

import (
	"fmt"
	"strings"
)

// Alphabet is what an SMSC takes data_coding 0x00 to be: SMPP 3.4
// §5.2.19 calls it the "SMSC Default Alphabet" and leaves it to the SMSC.
// Most take GSM 03.38; some take Latin-1 or ASCII and convert to GSM for
// the air themselves (Kannel's alt-charset is for them). A text goes as
// data_coding 0x00 only when both GSM and the SMSC's alphabet hold each
// of its characters (so the SMSC can put it on the air as GSM 7-bit, and
// it is counted and split in septets as before); otherwise it goes in
// UCS-2.
type Alphabet uint8

const (
	AlphabetGSM    Alphabet = iota // GSM 03.38, one septet an octet (or packed)
	AlphabetLatin1                 // ISO-8859-1, one octet a character
	AlphabetASCII                  // IA5 (ASCII), one octet a character
)

var alphabetNames = [...]string{"gsm", "latin1", "ascii"}

func (a Alphabet) String() string {
	if int(a) < len(alphabetNames) {
		return alphabetNames[a]
	}
	return fmt.Sprintf("alphabet(%d)", uint8(a))
}

// ParseAlphabet is the inverse of Alphabet.String, for configuration files.
func ParseAlphabet(s string) (Alphabet, error) {
	for i, n := range alphabetNames {
		if strings.EqualFold(s, n) {
			return Alphabet(i), nil
		}
	}
	return 0, fmt.Errorf("%w: default alphabet %q (want gsm, latin1 or ascii)", ErrBadOptions, s)
}

// has reports whether the alphabet holds r.
func (a Alphabet) has(r rune) bool {
	switch a {
	case AlphabetLatin1:
		return r < 0x100
	case AlphabetASCII:
		return r < 0x80
	}
	return true
}

// DataCoding is the data_coding that says explicitly what a's data_coding
// 0x00 means (0x03 Latin-1, 0x01 IA5; 0x00 for GSM): a receipt's or
// reply's 0x00 text from an SMSC of this alphabet is read as that.
func (a Alphabet) DataCoding() byte {
	switch a {
	case AlphabetLatin1:
		return 0x03
	case AlphabetASCII:
		return 0x01
	}
	return DataCodingGSM7
}

// fromSeptets appends to dst the text of the unpacked GSM septets in the
// alphabet, one octet a character; a character the alphabet lacks (a part
// stored under another alphabet's choice) is written '?'.
func (a Alphabet) fromSeptets(dst, septets []byte) []byte {
	for _, r := range gsmDecode(septets) {
		if !a.has(r) {
			r = '?'
		}
		dst = append(dst, byte(r))
	}
	return dst
}
