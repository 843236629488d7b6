package sheet

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
)

// The XLSX guard: excelize holds whatever one XML token, one cell or one
// shared string of the file holds, and reads every part that is not a
// worksheet or the shared strings table into memory whole. A few MB of
// zip archive can inflate to gigabytes of one of those. checkXLSX reads
// the archive once, streaming, before excelize sees it, and refuses a file
// whose parts, tokens, cells, rows or shared strings pass the bounds below
// — so that what excelize then holds is bounded by the Limits, not by the
// file.

const (
	// xlsxInMemory: larger worksheets and shared strings tables are
	// unpacked to temporary files and streamed (excelize's
	// UnzipXMLSizeLimit); smaller ones are parsed in memory.
	xlsxInMemory = 256 << 10
	// xlsxMaxPart: any other part (workbook, styles, theme, relationships,
	// pictures) that excelize reads into memory.
	xlsxMaxPart = 4 << 20
	// xlsxMaxOther: all those parts together.
	xlsxMaxOther = 16 << 20
	// xlsxMaxParts: entries of the archive (each costs excelize and
	// archive/zip a few hundred bytes before anything is checked).
	xlsxMaxParts = 10_000
	// xlsxMaxCells: cell elements of one row of a worksheet.
	xlsxMaxCells = MaxColumns
	// xlsxMarkup: the XML of one cell or shared string may hold this many
	// times Limits.MaxCell bytes (entities, formatting runs), plus
	// xlsxSlack.
	xlsxMarkup = 4
	xlsxSlack  = 4 << 10
)

var centralHeader = []byte("PK\x01\x02")

// checkXLSX checks the archive in ra (size bytes) against lim.
func checkXLSX(ra io.ReaderAt, size int64, lim Limits) error {
	// archive/zip allocates an entry per central directory header it finds
	// (and keeps reading headers past the count the archive declares):
	// every such header starts with its signature, so counting those
	// bounds the entries from above.
	if n, err := countSig(io.NewSectionReader(ra, 0, size), centralHeader); err != nil {
		return &Error{Err: err}
	} else if n > xlsxMaxParts {
		return rowErr(0, ErrLimit, "XLSX: more than %d parts in the archive", xlsxMaxParts)
	}
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		return &Error{Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
	}
	var unpacked, other int64
	for _, f := range zr.File {
		n := int64(f.UncompressedSize64)
		if f.UncompressedSize64 > uint64(lim.MaxUnpacked) || unpacked+n > lim.MaxUnpacked {
			return rowErr(0, ErrLimit, "XLSX: the archive unpacks to more than %d bytes", lim.MaxUnpacked)
		}
		unpacked += n
		name := strings.ToLower(strings.ReplaceAll(f.Name, "\\", "/"))
		sst := name == "xl/sharedstrings.xml"
		sheet := strings.HasPrefix(name, "xl/worksheets/sheet")
		if !sst && !sheet {
			if n > xlsxMaxPart {
				return rowErr(0, ErrLimit, "XLSX: part %s unpacks to %d bytes (at most %d): save the sheet alone, without pictures", path.Base(f.Name), n, xlsxMaxPart)
			}
			if other += n; other > xlsxMaxOther {
				return rowErr(0, ErrLimit, "XLSX: the parts other than sheets unpack to more than %d bytes: save the sheet alone, without pictures", xlsxMaxOther)
			}
			continue
		}
		if f.FileInfo().IsDir() {
			continue
		}
		if err := checkPart(f, sst, lim); err != nil {
			return err
		}
	}
	return nil
}

// checkPart reads one worksheet or shared strings table through an
// xmlGuard.
func checkPart(f *zip.File, sst bool, lim Limits) error {
	rc, err := f.Open()
	if err != nil {
		return &Error{Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
	}
	defer rc.Close()
	g := &xmlGuard{r: bufio.NewReaderSize(rc, 32<<10), sst: sst,
		max: int64(xlsxMarkup*lim.MaxCell + xlsxSlack), maxStrings: int64(lim.MaxSharedStrings), maxRows: int64(lim.MaxRows) * 4}
	if err := g.run(); err != nil {
		var se *Error
		if errors.As(err, &se) {
			return err
		}
		return &Error{Row: g.row, Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
	}
	return nil
}

// countSig counts the occurrences of sig (4 bytes, no repeated prefix) in r.
func countSig(r io.Reader, sig []byte) (int, error) {
	buf := make([]byte, 64<<10)
	n, keep := 0, 0
	for {
		m, err := r.Read(buf[keep:])
		end := keep + m
		n += bytes.Count(buf[:end], sig)
		// Keep the last bytes: a signature may straddle two reads.
		keep = copy(buf, buf[max(0, end-len(sig)+1):end])
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// xmlGuard scans the XML of a worksheet or shared strings table the way
// encoding/xml tokenises it, and fails once a token, a cell (<c>…</c>) or
// a shared string (<si>…</si>) is longer than max bytes, a row has more
// than xlsxMaxCells cells, or the table more than maxStrings strings.
// Doctype and other directives (never in a workbook, and read by
// encoding/xml up to an unbounded nesting) are refused.
type xmlGuard struct {
	r          *bufio.Reader
	sst        bool
	max        int64
	maxStrings int64
	maxRows    int64

	pos     int64 // bytes read
	open    int64 // where the cell or shared string being read started; -1: none
	row     int   // the row being read (its r attribute, else counted)
	rows    int64
	cells   int
	strings int64
	tag     []byte // the first bytes of the tag being read
}

func (g *xmlGuard) limit(what string) error {
	if g.sst {
		return rowErr(0, ErrLimit, "XLSX: a %s of the shared strings longer than %d bytes", what, g.max)
	}
	return rowErr(g.row, ErrLimit, "XLSX: a %s longer than %d bytes", what, g.max)
}

func (g *xmlGuard) byte() (byte, error) {
	c, err := g.r.ReadByte()
	if err != nil {
		return 0, err
	}
	g.pos++
	if g.open >= 0 && g.pos-g.open > g.max {
		if g.sst {
			return 0, g.limit("shared string")
		}
		return 0, g.limit("cell")
	}
	return c, nil
}

func (g *xmlGuard) run() error {
	g.open = -1
	run := int64(0) // bytes of the text being read
	for {
		c, err := g.byte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if c != '<' {
			if run++; run > g.max {
				return g.limit("text")
			}
			continue
		}
		run = 0
		if err := g.markup(); err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
}

// markup reads what follows a '<'.
func (g *xmlGuard) markup() error {
	c, err := g.byte()
	if err != nil {
		return err
	}
	switch c {
	case '?':
		return g.until("?>", "processing instruction")
	case '!':
		head, err := g.r.Peek(2)
		if err == nil && string(head) == "--" {
			return g.until("-->", "comment")
		}
		if head, err := g.r.Peek(7); err == nil && string(head) == "[CDATA[" {
			return g.until("]]>", "CDATA section")
		}
		return errors.New("a directive (<!…>) in a worksheet")
	case '/':
		name, _, err := g.tagBody()
		if err != nil {
			return err
		}
		switch {
		case !g.sst && name == "c" || g.sst && name == "si":
			g.open = -1
		case !g.sst && name == "row":
			g.cells = 0
		}
		return nil
	}
	_ = g.r.UnreadByte()
	g.pos--
	start := g.pos - 1
	name, empty, err := g.tagBody()
	if err != nil {
		return err
	}
	switch {
	case g.sst && name == "si":
		if g.strings++; g.strings > g.maxStrings {
			return rowErr(0, ErrLimit, "XLSX: more than %d shared strings", g.maxStrings)
		}
		if !empty && g.open < 0 {
			g.open = start
		}
	case !g.sst && name == "row":
		if g.rows++; g.rows > g.maxRows {
			return rowErr(g.row, ErrLimit, "XLSX: more than %d rows, with or without content", g.maxRows)
		}
		g.cells = 0
		g.row++
		if r, ok := attr(g.tag, "r"); ok {
			if n, err := strconv.Atoi(r); err == nil {
				g.row = n
			}
		}
	case !g.sst && name == "c":
		if g.cells++; g.cells > xlsxMaxCells {
			return rowErr(g.row, ErrLimit, "XLSX: more than %d cells in a row", xlsxMaxCells)
		}
		if !empty && g.open < 0 {
			g.open = start
		}
	}
	return nil
}

// tagBody reads a tag's name and attributes up to its '>', quotes
// respected; name is the local name (without a prefix), empty tells a
// self-closing tag.
func (g *xmlGuard) tagBody() (name string, empty bool, err error) {
	g.tag = g.tag[:0]
	var quote byte
	prev := byte(0)
	for n := int64(0); ; n++ {
		if n > g.max {
			return "", false, g.limit("tag")
		}
		c, err := g.byte()
		if err != nil {
			return "", false, err
		}
		if len(g.tag) < 256 {
			g.tag = append(g.tag, c)
		}
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			t := g.tag
			if i := bytes.IndexAny(t, " \t\r\n/>"); i >= 0 {
				t = t[:i]
			}
			if i := bytes.IndexByte(t, ':'); i >= 0 {
				t = t[i+1:]
			}
			switch string(t) { // no allocation: the names that matter
			case "c":
				name = "c"
			case "row":
				name = "row"
			case "si":
				name = "si"
			}
			return name, prev == '/', nil
		}
		prev = c
	}
}

// until reads up to and including end (at most max bytes).
func (g *xmlGuard) until(end, what string) error {
	matched := 0
	for n := int64(0); ; n++ {
		if n > g.max {
			return g.limit(what)
		}
		c, err := g.byte()
		if err != nil {
			return err
		}
		switch {
		case c == end[matched]:
			if matched++; matched == len(end) {
				return nil
			}
		case c == end[0] && matched > 0 && end[matched-1] == end[0]:
			// "--->", "]]]>": the last bytes still match the start of end
		case c == end[0]:
			matched = 1
		default:
			matched = 0
		}
	}
}

// attr is the value of attribute name in the start of a tag ("" if not
// there, or cut off).
func attr(tag []byte, name string) (string, bool) {
	t := string(tag)
	for _, q := range []string{`"`, `'`} {
		if i := strings.Index(t, " "+name+"="+q); i >= 0 {
			v := t[i+len(name)+3:]
			if j := strings.Index(v, q); j >= 0 {
				return v[:j], true
			}
		}
	}
	return "", false
}
