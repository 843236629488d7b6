package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/qxtd/qxtd/gateway"
	"github.com/qxtd/qxtd/policy"
	"github.com/qxtd/qxtd/sheet"
)

type chunkRow struct {
	row    int
	number string
}

// chunk is consecutive rows with the same text: one gateway call.
type chunk struct {
	text string
	rows []chunkRow
	// readErrs are rows the file's reader refused (an empty number…)
	// since the chunk before: stored with this chunk's answer, so that a
	// restart counts them from the start as the chunk's own rows. At
	// most BatchChunk rows in all, with at least one of rows: a chunk
	// answer of more rows is one the releases before this one drop.
	readErrs []RowError
}

// run reads the rows and hands them to the gateway, at most BatchInFlight
// unanswered, paced in file order; it returns once every call is answered.
// The rows in sent were sent before a restart (Resume): they are read,
// and counted there, but not sent again.
func (r *Runner) run(ctx context.Context, j *Job, acct *gateway.Account, req gateway.SendRequest, rows *Rows, sent *sentRows) {
	sem := make(chan struct{}, BatchInFlight)
	var wg sync.WaitGroup
	var cur chunk
	flush := func() {
		n := len(cur.rows)
		if n == 0 {
			return
		}
		c := cur
		cur = chunk{}
		for i := range n {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for range i {
					<-sem
				}
				j.notSent(c.rows)
				return
			}
		}
		// Paced here, in file order: calls start in the order of the rows.
		if err := r.pacer(j.ent).Wait(ctx); err != nil {
			for range n {
				<-sem
			}
			j.notSent(c.rows)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sendChunk(ctx, j, acct, req, c)
			for range n {
				<-sem
			}
		}()
	}
	for ctx.Err() == nil {
		row, err := rows.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			j.fail(ReasonInvalid, "the file cannot be read further: "+err.Error(), readZH(err))
			break
		}
		if sent.has(row.N) {
			continue // read and counted before the restart (resume)
		}
		j.read()
		if row.Reason != "" {
			e := RowError{Row: row.N, Number: row.Number, Reason: row.Reason, Message: row.Message}
			j.rowError(e)
			if len(cur.readErrs) < BatchChunk-1 && len(cur.rows)+len(cur.readErrs) < BatchChunk {
				cur.readErrs = append(cur.readErrs, e)
			} // else read again after a restart, and counted then
			continue
		}
		if len(cur.rows) > 0 && (cur.text != row.Text || len(cur.rows)+len(cur.readErrs) == BatchChunk) {
			flush()
		}
		cur.text = row.Text
		cur.rows = append(cur.rows, chunkRow{row.N, row.Number})
	}
	if ctx.Err() != nil {
		j.notSent(cur.rows)
		cur = chunk{}
	}
	flush()
	wg.Wait()
	j.end(ctx.Err(), r.cfg.Now())
}

// sendChunk hands one chunk to the gateway and records its outcome per row.
// A cancelled job still finishes a call once it started: what the gateway
// accepted stays accepted.
func (r *Runner) sendChunk(ctx context.Context, j *Job, acct *gateway.Account, req gateway.SendRequest, c chunk) {
	req.Text = c.text
	req.Dests = make([]string, len(c.rows))
	for i, cr := range c.rows {
		req.Dests[i] = cr.number
	}
	backoff := rateBackoffMin
	storeWait := false // logged that it waits for the store
	for attempt := 0; ; attempt++ {
		if attempt > 0 { // the first attempt was paced by the caller
			if err := r.pacer(j.ent).Wait(ctx); err != nil {
				j.notSent(c.rows)
				return
			}
		}
		sctx := context.WithoutCancel(ctx)
		if a := r.answer(j, c); a != nil {
			// Which rows this call sent is stored with its messages.
			sctx = gateway.WithAnswer(sctx, a)
		}
		res, err := r.cfg.Gateway.Send(sctx, acct, req)
		if err == nil {
			accepted, refused := c.outcome(res)
			for _, e := range refused {
				j.rowError(e)
			}
			j.ok(accepted)
			return
		}
		reason, code, msg := policy.Describe(err)
		switch {
		case reason == policy.ReasonRateLimited.String():
			// Other traffic of the enterprise took the tokens: wait.
			if !sleep(ctx, backoff) {
				j.notSent(c.rows)
				return
			}
			backoff = min(2*backoff, rateBackoffMax)
			continue
		case errors.Is(err, gateway.ErrStore):
			// The disk failed (full, or an I/O error): wait for it as
			// the dispatcher does rather than end the job, whose rows
			// would then need a new upload. A commit whose sync failed
			// may have stored the chunk all the same: then its rows
			// were taken, and are not sent again.
			if ca, ok := r.storedChunk(j, c); ok {
				// Counted once the disk has it: a power cut before
				// then loses it, and a resumed job sends it again. A
				// job cancelled meanwhile counts it all the same: its
				// messages go out, and its end, stored after it, is
				// durable only once it is (before 2026-12-06 it was
				// counted unsent).
				if !r.synced(ctx, backoff) && !j.cancelled() {
					j.notSent(c.rows)
					return
				}
				for _, e := range ca.Errors[min(len(c.readErrs), len(ca.Errors)):] {
					j.rowError(e)
				}
				j.ok(ca.Accepted)
				return
			}
			if !storeWait {
				storeWait = true
				r.cfg.Logger.Warn("batch: the message store failed; the job's chunk waits for it", "job", j.id, "row", c.rows[0].row, "err", err)
			}
			if !sleep(ctx, backoff) {
				j.notSent(c.rows)
				return
			}
			backoff = min(2*backoff, storeBackoffMax)
			continue
		case reason == policy.ReasonAccountDisabled.String(), reason == policy.ReasonNoSignature.String(), reason == "internal":
			j.notSent(c.rows)
			j.fail(reason, msg, policy.DetailZH(err))
		default: // the text: too_long, bad_text, binary_refused …
			for _, cr := range c.rows {
				j.rowError(RowError{Row: cr.row, Number: cr.number, Reason: reason, Code: code, Message: msg, DetailZH: policy.DetailZH(err)})
			}
		}
		return
	}
}

// synced waits until a commit of the store succeeds (Probe: after one
// whose sync failed, the store's next commit syncs what it left first),
// trying every wait, doubling to storeBackoffMax; false if ctx ended.
func (r *Runner) synced(ctx context.Context, wait time.Duration) bool {
	for {
		if err := r.cfg.Store.Probe(ctx); err == nil {
			return true
		}
		if !sleep(ctx, wait) {
			return false
		}
		wait = min(2*wait, storeBackoffMax)
	}
}

// sleep waits d (a backoff between tries, not a wait for an event);
// false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// storedChunk is the answer stored for chunk c of j, if a send whose
// commit failed stored it all the same.
func (r *Runner) storedChunk(j *Job, c chunk) (chunkAnswer, bool) {
	if r.cfg.Store == nil {
		return chunkAnswer{}, false
	}
	a, err := r.cfg.Store.JobChunk(j.id, uint32(c.rows[0].row))
	if err != nil {
		return chunkAnswer{}, false
	}
	ca, err := decodeChunk(a.Body)
	if err != nil {
		r.cfg.Logger.Error("batch: a chunk's stored answer does not decode; it is sent again", "job", j.id, "row", c.rows[0].row, "err", err)
		return chunkAnswer{}, false
	}
	return ca, true
}

// readZH says in Chinese that a job's file could not be read further,
// from the row it stopped at when the sheet says it.
func readZH(err error) string {
	var se *sheet.Error
	if errors.As(err, &se) && se.Row > 0 {
		return fmt.Sprintf("文件第 %d 行起无法读取，任务中止（请用 Excel 另存为 .xlsx 或 .csv 文件后，重新上传没有发送的行）", se.Row)
	}
	return "文件无法继续读取，任务中止（请用 Excel 另存为 .xlsx 或 .csv 文件后，重新上传没有发送的行）"
}
