package api

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/qxtd/qxtd/sheet"
)

// Uploaded sheets — batch and templated sends, both address books,
// whitelist imports — share one limiter: at most UploadLimits.Total files
// are being read at once, at most PerEnterprise of one enterprise, so
// that a tenant uploading in a loop slows only itself and the daemon's
// memory is bounded by a few files, not by the number of requests. A file
// holds its slot while it is parsed (a batch job: until its first row is
// ready; an import: until it is stored), not while it is uploaded nor
// while a batch job sends. Past a limit: 429 too_many_imports.

// UploadLimits bound the uploaded files read at once.
type UploadLimits struct {
	Total         int // in all (0: DefaultUploadLimits.Total)
	PerEnterprise int // of one enterprise (0: DefaultUploadLimits.PerEnterprise)
}

// DefaultUploadLimits are the limits of a zero UploadLimits field.
var DefaultUploadLimits = UploadLimits{Total: 4, PerEnterprise: 2}

// SetUploadLimits sets the limits (before the server serves).
func (s *Server) SetUploadLimits(l UploadLimits) {
	s.jobs.imports.mu.Lock()
	defer s.jobs.imports.mu.Unlock()
	s.jobs.imports.lim = l
}

// importLimiter counts the files being read, in all and per enterprise.
type importLimiter struct {
	mu  sync.Mutex
	lim UploadLimits
	all int
	per map[string]int
}

// acquire takes a slot for enterprise ent; ok is false past a limit.
// Call release once when the file has been read.
func (l *importLimiter) acquire(ent string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	total, per := l.lim.Total, l.lim.PerEnterprise
	if total <= 0 {
		total = DefaultUploadLimits.Total
	}
	if per <= 0 {
		per = DefaultUploadLimits.PerEnterprise
	}
	if l.all >= total || l.per[ent] >= per {
		return nil, false
	}
	if l.per == nil {
		l.per = map[string]int{}
	}
	l.all++
	l.per[ent]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.all--
			if l.per[ent]--; l.per[ent] == 0 {
				delete(l.per, ent)
			}
		})
	}, true
}

// importSlot takes an import slot for ent, or answers 429 itself.
func (s *Server) importSlot(w http.ResponseWriter, ent string) (release func(), ok bool) {
	release, ok = s.jobs.imports.acquire(ent)
	if !ok {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, "too_many_imports",
			"too many files are being read at once (for this enterprise, or in all): retry in a few seconds")
	}
	return release, ok
}

// writeSheetErr answers an error reading an uploaded file: a limit
// (writeSheetLimit), or a file that is not what its format says (a
// broken XLSX archive, XML that cannot be parsed) or of a format not read: 400
// invalid about the file, in Chinese too. ok is false for any other
// error.
func writeSheetErr(w http.ResponseWriter, err error) bool {
	if writeSheetLimit(w, err) {
		return true
	}
	var se *sheet.Error
	if !errors.As(err, &se) {
		return false
	}
	var zh string
	switch {
	case errors.Is(err, sheet.ErrUnsupported):
		zh = "不支持这种文件格式：请上传 .xlsx 或 .csv 文件"
	case !errors.Is(err, sheet.ErrMalformed):
		return false // a read error, not the file's
	case se.Row > 0:
		zh = fmt.Sprintf("文件第 %d 行无法读取：请用 Excel 另存为 .xlsx 或 .csv 文件后再上传", se.Row)
	default:
		zh = "文件无法读取：请用 Excel 另存为 .xlsx 或 .csv 文件后再上传"
	}
	writeInvalid(w, "file", zh, err.Error())
	return true
}

// writeSheetLimit answers 422 file_limit for a file that passed one of
// package sheet's limits (a cell, a shared string, a part of an XLSX
// archive, rows); ok is false for any other error.
func writeSheetLimit(w http.ResponseWriter, err error) bool {
	var se *sheet.Error
	if !errors.Is(err, sheet.ErrLimit) || !errors.As(err, &se) {
		return false
	}
	msg := strings.TrimPrefix(se.Err.Error(), sheet.ErrLimit.Error()+": ")
	if se.Row > 0 {
		msg = fmt.Sprintf("row %d: %s", se.Row, msg)
	}
	writeError(w, http.StatusUnprocessableEntity, "file_limit", msg)
	return true
}

// importFile receives an import upload (an address book, a whitelist: the
// file alone, at most limit bytes), takes an import slot for ent and opens
// the spooled file. It answers errors itself; when ok, read the file with
// its format and call done once finished.
func (s *Server) importFile(w http.ResponseWriter, r *http.Request, limit int64, ent string) (f *os.File, format sheet.Format, done func(), ok bool) {
	var opts batchOptions
	up, ok := s.spoolUpload(w, r, limit, &opts)
	if !ok {
		return nil, 0, nil, false
	}
	if opts != (batchOptions{}) {
		os.Remove(up.path)
		writeInvalid(w, "", "导入只需上传文件，不带其他参数", "an import takes only the file")
		return nil, 0, nil, false
	}
	release, ok := s.importSlot(w, ent)
	if !ok {
		os.Remove(up.path)
		return nil, 0, nil, false
	}
	f, err := os.Open(up.path)
	if err != nil {
		release()
		os.Remove(up.path)
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return nil, 0, nil, false
	}
	return f, up.format, func() {
		f.Close()
		os.Remove(up.path)
		release()
	}, true
}
