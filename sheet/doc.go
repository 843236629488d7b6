// Package sheet reads the spreadsheets enterprises upload — batch and
// templated sends, address books, whitelist imports — row by row, in
// bounded memory, whatever Excel or WPS on a Chinese Windows wrote them as.
// It imports nothing of qxtd: callers decide what the columns mean.
//
// # Basics
//
//	f, _ := sheet.FormatOf(name) // a hint; Detect when the name tells nothing
//	r, err := sheet.Open(file, sheet.Options{Format: f, Limits: lim})
//	defer r.Close()
//	for {
//		row, err := r.Next() // io.EOF at the end
//		…row.N, row.Cell(0)…
//	}
//
// Formats:
//
//   - CSV (RFC 4180, quotes taken leniently) in UTF-8 with or without a
//     byte order mark, UTF-16 LE or BE with a byte order mark (Excel's
//     "Unicode text"), or GB18030 / GBK (Excel's "CSV" on Chinese Windows),
//     chosen when the first 64 KiB are not UTF-8. The separator is a tab when
//     the first line has tabs and no commas, else a comma.
//   - XLSX (Office Open XML): the first sheet, through excelize's streaming
//     row iterator. Row.Cells are the values as stored (a number cell
//     formatted "0.00E+00" is "8613912345678", not "8.61E+12"); with
//     Options.Shown, Row.Shown has them as Excel shows them too (for
//     template text: dates, amounts). NumericCell turns a number written
//     in scientific or decimal notation back into its digits, and refuses
//     scientific notation that lost digits ("1.38001E+10": nobody's
//     number).
//
// The content decides, not the name: a zip archive is read as XLSX even
// when called CSV (Format is a hint), and a file given as XLSX that is not a
// zip archive is refused. XLS (Excel 97–2003, an OLE2 compound file) is
// recognised and refused with ErrUnsupported; Sniff tells it from the first
// bytes, before anything is parsed. Open refuses a file only after reading
// it whole (as excelize does anyway): a file over Limits.MaxBytes is
// ErrLimit, and a failing source its own error, whatever its content.
//
// # Invariants
//
//   - Next returns only rows with content: a row whose cells are all blank
//     (or a line with no cells) is skipped, never returned and never
//     counted. Row.N is the 1-based line of a CSV file where the row starts
//     (blank lines and lines inside quoted cells count) or the row of the
//     sheet, so that a message can name it as the user sees it.
//   - Memory is bounded by the caller's Limits, never by the file: CSV holds
//     one row (at most Limits.MaxRow bytes, plus a 64 KiB read-ahead). A row
//     has at most MaxColumns (1024) cells in either format: a CSV record of
//     more, or an XLSX row with a value past column AMJ, is ErrLimit. XLSX
//     is spooled to a temporary file and read once, streaming, before
//     excelize parses it (guard.go): more than 10,000 archive entries, a
//     part other than a sheet over 4 MiB (16 MiB in all), an XML token,
//     cell or shared string over 4 × Limits.MaxCell + 4 KiB, a row of more
//     than 1024 cells, more than Limits.MaxSharedStrings shared strings or
//     an archive unpacking to more than Limits.MaxUnpacked fail the file
//     with ErrLimit before excelize holds any of it. excelize then holds
//     the compressed file while it opens it (at most Limits.MaxBytes, read
//     into twice that: growing chunks, then one copy; handed back to the
//     system as soon as it is opened) and spills sheets and shared strings
//     over 256 KiB to temporary files, removed by Close.
//   - Every limit passed, and every malformed file, is an *Error naming the
//     row where it was found; errors.Is tells ErrLimit, ErrMalformed and
//     ErrUnsupported apart, and an error of the underlying reader (an
//     http.MaxBytesError, say) stays reachable with errors.As.
//   - Bad input is an error, never a panic (FuzzRead holds the reader to it;
//     a panic inside excelize is recovered and reported as ErrMalformed).
//
// # Caveats
//
//   - Row.Cells is valid until the next call of Next: copy what you keep.
//   - The encoding of a CSV file is chosen from its first 64 KiB: a file
//     that is ASCII there and GBK further on is read as UTF-8, its later
//     cells carrying invalid UTF-8. UTF-16 without a byte order mark is not
//     recognised.
//   - excelize reads the whole compressed XLSX into memory while it opens
//     it: bound it with Limits.MaxBytes (or the caller's own reader).
//   - An XLSX value stored in scientific notation with fewer digits than
//     its size ("1.38E10") is refused by NumericCell like displayed text:
//     Excel stores plain digits, so such a value came through a lossy copy.
//   - A limit error in the middle of a CSV record names the row after the
//     last one returned: the record being read.
package sheet
