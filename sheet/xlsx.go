package sheet

import (
	"errors"
	"fmt"
	"io"

	"github.com/xuri/excelize/v2"
)

// xlsxInMemory: larger sheets and shared strings are unpacked to temporary
// files and streamed.
const xlsxInMemory = 1 << 20

type xlsxReader struct {
	f    *excelize.File
	rows *excelize.Rows
	opts excelize.Options
	lim  Limits
	n    int // the current row of the sheet
}

func openXLSX(r io.Reader, src *countingReader, lim Limits, o Options) (x *xlsxReader, err error) {
	defer recoverMalformed(0, &err)
	opts := excelize.Options{UnzipSizeLimit: lim.MaxUnpacked, UnzipXMLSizeLimit: min(xlsxInMemory, lim.MaxUnpacked),
		TmpDir: o.TempDir, RawCellValue: o.Raw}
	f, err := excelize.OpenReader(r, opts)
	if err != nil {
		switch {
		case errors.Is(src.err, errTooBig):
			return nil, rowErr(0, ErrLimit, "the file is larger than %d bytes", lim.MaxBytes)
		case src.err != nil: // reading failed, not parsing
			return nil, &Error{Err: src.err}
		}
		return nil, &Error{Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
	}
	x = &xlsxReader{f: f, opts: opts, lim: lim}
	defer func() {
		if err != nil {
			_ = x.close()
		}
	}()
	sheets := f.GetSheetList()
	if len(sheets) == 0 {
		return nil, rowErr(0, ErrMalformed, "XLSX: no sheet")
	}
	if x.rows, err = f.Rows(sheets[0]); err != nil {
		return nil, &Error{Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
	}
	return x, nil
}

func (x *xlsxReader) next() (_ Row, err error) {
	defer recoverMalformed(x.n, &err)
	for x.rows.Next() {
		x.n++
		cells, err := x.rows.Columns(x.opts)
		if err != nil {
			return Row{}, &Error{Row: x.n, Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
		}
		if blank(cells) {
			continue
		}
		return Row{N: x.n, Cells: cells}, nil
	}
	if err := x.rows.Error(); err != nil {
		return Row{}, &Error{Row: x.n + 1, Err: fmt.Errorf("%w: XLSX: %w", ErrMalformed, err)}
	}
	return Row{}, io.EOF
}

func (x *xlsxReader) close() error {
	var err error
	if x.rows != nil {
		err = x.rows.Close()
	}
	if e := x.f.Close(); err == nil {
		err = e
	}
	return err
}

// recoverMalformed turns a panic of the XLSX parser on a hostile file into
// an error naming the row.
func recoverMalformed(row int, err *error) {
	if p := recover(); p != nil {
		*err = &Error{Row: row, Err: fmt.Errorf("%w: XLSX: %v", ErrMalformed, p)}
	}
}
