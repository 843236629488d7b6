// Package sheettest builds hostile spreadsheets for tests, as
// net/http/httptest builds requests: XLSX archives whose few megabytes
// inflate to a gigabyte in one cell, one shared string or one part. They
// are written with archive/zip, streaming, so that building one costs
// CPU, not memory.
package sheettest

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Part is one entry of an archive: its name and a writer of its content.
type Part struct {
	Name  string
	Write func(w io.Writer) error
}

// Text is a Part with fixed content.
func Text(name, content string) Part {
	return Part{Name: name, Write: func(w io.Writer) error {
		_, err := io.WriteString(w, content)
		return err
	}}
}

// Workbook is an XLSX archive of one sheet ("Sheet1", xl/worksheets/sheet1.xml,
// written by sheet) and a shared strings table (written by sst, if not nil),
// with extra parts after them.
func Workbook(sheet, sst func(w io.Writer) error, extra ...Part) []byte {
	parts := []Part{
		Text("[Content_Types].xml", `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">`+
			`<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>`+
			`<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>`+
			`<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>`+
			`<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>`),
		Text("_rels/.rels", `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">`+
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`),
		Text("xl/workbook.xml", `<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">`+
			`<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>`),
		Text("xl/_rels/workbook.xml.rels", `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">`+
			`<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>`+
			`<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>`),
		{Name: "xl/worksheets/sheet1.xml", Write: sheet},
	}
	if sst != nil {
		parts = append(parts, Part{Name: "xl/sharedStrings.xml", Write: sst})
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, p := range append(parts, extra...) {
		w, err := zw.Create(p.Name)
		if err == nil {
			err = p.Write(w)
		}
		if err != nil {
			panic(fmt.Sprintf("sheettest: %s: %v", p.Name, err))
		}
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

const (
	sheetHead = `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>`
	sheetTail = `</sheetData></worksheet>`
)

// Rows writes a sheet of the rows given as their cells' XML.
func Rows(rows ...string) func(w io.Writer) error {
	return func(w io.Writer) error {
		var b strings.Builder
		b.WriteString(sheetHead)
		for i, r := range rows {
			fmt.Fprintf(&b, `<row r="%d">%s</row>`, i+1, r)
		}
		b.WriteString(sheetTail)
		_, err := io.WriteString(w, b.String())
		return err
	}
}

// Inline is the XML of an inline string cell.
func Inline(ref, s string) string {
	return fmt.Sprintf(`<c r="%s" t="inlineStr"><is><t>%s</t></is></c>`, ref, s)
}

// repeat writes n bytes of c.
func repeat(w io.Writer, c byte, n int) error {
	chunk := bytes.Repeat([]byte{c}, 64<<10)
	for n > 0 {
		m, err := w.Write(chunk[:min(n, len(chunk))])
		if err != nil {
			return err
		}
		n -= m
	}
	return nil
}

// HugeCell is a workbook whose row 2 holds, after a header and before a
// normal row, one inline string cell of n bytes: about n/1000 bytes of
// archive.
func HugeCell(n int) []byte {
	return Workbook(func(w io.Writer) error {
		_, err := io.WriteString(w, sheetHead+`<row r="1">`+Inline("A1", "号码")+Inline("B1", "内容")+`</row>`+
			`<row r="2">`+Inline("A2", "13800138000")+`<c r="B2" t="inlineStr"><is><t>`)
		if err == nil {
			err = repeat(w, 'A', n)
		}
		if err == nil {
			_, err = io.WriteString(w, `</t></is></c></row><row r="3">`+Inline("A3", "13800138001")+Inline("B3", "你好")+`</row>`+sheetTail)
		}
		return err
	}, nil)
}

// HugeSharedString is a workbook whose shared strings table holds one
// string of n bytes, used by cell B2.
func HugeSharedString(n int) []byte {
	return Workbook(Rows(Inline("A1", "号码")+Inline("B1", "内容"), Inline("A2", "13800138000")+`<c r="B2" t="s"><v>0</v></c>`),
		func(w io.Writer) error {
			_, err := io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>`)
			if err == nil {
				err = repeat(w, 'B', n)
			}
			if err == nil {
				_, err = io.WriteString(w, `</t></si></sst>`)
			}
			return err
		})
}

// ManySharedStrings is a workbook whose shared strings table holds n
// empty strings.
func ManySharedStrings(n int) []byte {
	return Workbook(Rows(Inline("A1", "号码"), `<c r="A2" t="s"><v>0</v></c>`),
		func(w io.Writer) error {
			_, err := io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">`)
			si := bytes.Repeat([]byte("<si><t></t></si>"), 4096)
			for ; err == nil && n > 0; n -= 4096 {
				_, err = w.Write(si[:min(n, 4096)*16])
			}
			if err == nil {
				_, err = io.WriteString(w, `</sst>`)
			}
			return err
		})
}

// HugePart is a workbook with an extra part (a "picture") of n bytes.
func HugePart(n int) []byte {
	return Workbook(Rows(Inline("A1", "号码"), Inline("A2", "13800138000")), nil,
		Part{Name: "xl/media/image1.png", Write: func(w io.Writer) error { return repeat(w, 0, n) }})
}
