// Package batch is the engine of batch and templated sends (批量发送, 定制发送): it
// reads an uploaded sheet row by row (package sheet), turns each row into a
// number and a text — column A and B of a batch file, or a template whose
// {column} fields are filled from the row — and hands the rows to the
// gateway at the enterprise's pace, accounting for every one. The HTTP
// handlers that start, show and cancel jobs live in package api, which
// imports this one; batch never imports api.
//
// # Basics
//
//	r := batch.New(batch.Config{Gateway: gw, Policy: pol, Store: store})
//	files, err := r.Resume(account, opts)  // the stored jobs: the running ones go on
//	slot, err := r.Reserve(enterprise)      // ErrTooManyJobs, ErrClosed
//	rows, err := batch.OpenRows(file, template, numberColumn, opts) // *FieldError: the header does not fit
//	job, err := slot.Start(batch.JobSpec{…}, rows) // or slot.Release(); err: not stored
//	row, err := rows.Next()                 // a row as a job sends it (a preview reads the first few)
//	header, first, cut, err := batch.Head(file, opts, 5) // a templated send's columns and first rows
//	job.Progress(true)                      // rows read, accepted, refused, unsent, row errors
//	job.Cancel()                            // the user's DELETE
//	r.Close()                               // before stopping the gateway
//
// Batch file: column A the number, column B the text, one SMS per row; a
// first row whose column A has no digit is a header. Templated send: the
// first row is a header naming the columns; the number is in the column
// the caller names, or in the first one headed 号码, 手机号, … (see
// numberHeaders); "{{" and "}}" are literal braces. A template field or a
// number column that names no column, or a template that is not UTF-8, is
// a *FieldError before any row is sent.
//
// # Invariants
//
//   - Every data row is accounted for: RowsRead == Accepted + Refused +
//     Unsent when a job has ended. Accepted rows are durable messages of
//     the outbox; refused rows carry their row number and reason (an empty
//     number, text or field, a number Excel cut short — one of policy's
//     row reasons, policy.RowEmptyText … — or the gateway's refusal). The
//     number column is read as stored, template fields as Excel shows
//     them (sheet.Options.Shown); unsent rows were
//     read but not handed over because the job was cancelled or failed.
//     Rows with no content are not rows.
//   - Memory is bounded: rows stream from the sheet, at most BatchInFlight
//     rows of a job are with the gateway unanswered, a job lists at most
//     MaxJobErrors row errors and MaxJobErrorBytes of them (copies, the
//     number cut to 32 bytes, the message to 300: never the row they were
//     read from), its file name at most MaxFileName bytes; finished jobs
//     are forgotten after JobKeep, when a job starts or a job is read (at
//     most jobsKeptPerEnterprise per enterprise, jobsKept in all). Head
//     returns at most sheet.MaxColumns columns and HeadMaxBytes of cells.
//   - Every job's goroutine is owned by the Runner: Close cancels them and
//     waits; a gateway call that started is answered first, so what the
//     gateway accepted is counted as accepted.
//   - With Config.Registerer a Runner exports qxtd_batch_* series
//     (metrics.go): jobs running, ended by state, their rows by outcome,
//     and jobs resumed.
//   - Jobs pace themselves at the enterprise's TPS (policy.SubmitTPS),
//     shared by its jobs: each gateway call is one submission, as a
//     submit_sm is; consecutive rows with the same text go in one call (up
//     to BatchChunk recipients).
//
// # Caveats
//
//   - Without a Config.Store jobs live in memory: a restart forgets them
//     and stops a running job where it was (what it accepted stays in the
//     outbox). With one (the daemon's), a job is stored before Start
//     returns, each gateway call stores the rows it sent with their
//     messages, and Resume goes on after them at the next start (store.go):
//     each row is sent once. A job stopped by Close is not ended there.
//     A cancel is stored before the job stops (a restart ends a cancelled
//     job whose end was not stored yet), and a job shows its final state
//     only once its last record is stored.
//   - Row errors list the first MaxJobErrors by row (fewer past
//     MaxJobErrorBytes); Progress.ErrorCount counts all, and ErrorsCut
//     tells that some are not listed. The list's backing array may hold
//     up to twice its length (append), not counted in MaxJobErrorBytes.
package batch
