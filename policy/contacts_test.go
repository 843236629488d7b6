package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/qxtd/qxtd/sheet"
)

// cmcc returns the i-th number of a China Mobile block of Guangdong.
func cmcc(i int) string { return fmt.Sprintf("1380013%04d", i) }

func contactsCSV(n, from int, group string) string {
	var b strings.Builder
	b.WriteString("姓名,号码,分组\n")
	for i := range n {
		fmt.Fprintf(&b, "人%d,%s,%s\n", from+i, cmcc(from+i), group)
	}
	return b.String()
}

func TestContactsPermissions(t *testing.T) {
	f := newFixture(t)
	aUserBook := Book{Enterprise: entA, User: "a_user"}
	aEnt := EnterpriseBook(entA)
	in := ContactInput{Name: "张三", Number: "138 0013 8000", Groups: []string{" 销售部 ", "销售部", "市场部"}}

	// The personal book: its user only.
	c, err := f.p.AddContact(f.aUser, aUserBook, in)
	if err != nil {
		t.Fatal(err)
	}
	if c.Number != "+8613800138000" || c.Name != "张三" || !reflect.DeepEqual(c.Groups, []string{"销售部", "市场部"}) || c.AddedBy != "a_user" {
		t.Fatalf("added %+v", c)
	}
	for _, a := range []Actor{f.aAdmin, f.bAdmin} {
		if _, err := f.p.Contacts(a, aUserBook, ""); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s reads a_user's book: %v", a.Name, err)
		}
		if _, err := f.p.AddContact(a, aUserBook, in); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s writes a_user's book: %v", a.Name, err)
		}
	}
	if _, err := f.p.AddContact(f.aUser, aUserBook, in); !errors.Is(err, ErrExists) {
		t.Errorf("same number again: %v", err)
	}

	// The enterprise book: admins write, every member reads, nobody else.
	if _, err := f.p.AddContact(f.aUser, aEnt, in); !errors.Is(err, ErrForbidden) {
		t.Errorf("user writes the enterprise book: %v", err)
	}
	if _, err := f.p.AddContact(f.aAdmin, aEnt, in); err != nil {
		t.Fatal(err)
	}
	if cs, err := f.p.Contacts(f.aUser, aEnt, "市场部"); err != nil || len(cs) != 1 {
		t.Errorf("user reads the enterprise book: %v %+v", err, cs)
	}
	if _, err := f.p.Contacts(f.bAdmin, aEnt, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("another enterprise reads it: %v", err)
	}
	if _, err := f.p.GroupNumbers(f.bAdmin, aEnt, []string{"销售部"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("another enterprise expands its groups: %v", err)
	}
	if err := f.p.DeleteContact(f.aUser, aEnt, "13800138000"); !errors.Is(err, ErrForbidden) {
		t.Errorf("user deletes from the enterprise book: %v", err)
	}
	if _, err := f.p.ImportContacts(f.aUser, aEnt, strings.NewReader(contactsCSV(1, 0, "x")), sheet.CSV); !errors.Is(err, ErrForbidden) {
		t.Errorf("user imports into the enterprise book: %v", err)
	}
	// B's book of the same name is another book.
	if cs, err := f.p.Contacts(f.bAdmin, EnterpriseBook(entB), ""); err != nil || len(cs) != 0 {
		t.Errorf("B's book: %v %+v", err, cs)
	}

	// Bad fields.
	for _, bad := range []ContactInput{
		{Name: "x", Number: "020-88888888"},
		{Name: "", Number: "13800138001"},
		{Name: "x", Number: "13800138001", Groups: []string{strings.Repeat("长", 40)}},
	} {
		if _, err := f.p.AddContact(f.aUser, aUserBook, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", bad, err)
		}
	}

	// Delete, in any number format.
	if err := f.p.DeleteContact(f.aUser, aUserBook, "8613800138000"); err != nil {
		t.Fatal(err)
	}
	if err := f.p.DeleteContact(f.aUser, aUserBook, "13800138000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}

	// A user deleted and created again does not inherit the old book.
	if _, err := f.p.AddContact(f.aUser, aUserBook, in); err != nil {
		t.Fatal(err)
	}
	if err := f.p.DeleteUser(f.aAdmin, "a_user"); err != nil {
		t.Fatal(err)
	}
	f.clk.Advance(2e9)
	if _, err := f.p.CreateUser(f.aAdmin, NewUser{Enterprise: entA, Name: "新李四", SystemID: "a_user", Password: "secret2"}); err != nil {
		t.Fatal(err)
	}
	if cs, err := f.p.Contacts(f.aUser, aUserBook, ""); err != nil || len(cs) != 0 {
		t.Errorf("re-created user's book: %v %+v", err, cs)
	}
}

func TestContactsLimits(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		book  Book
		actor Actor
		limit int
	}{
		{Book{Enterprise: entA, User: "a_user"}, f.aUser, MaxPersonalContacts},
		{EnterpriseBook(entA), f.aAdmin, MaxEnterpriseContacts},
	} {
		// One more than the limit in one file: the last row is refused.
		res, err := f.p.ImportContacts(tc.actor, tc.book, strings.NewReader(contactsCSV(tc.limit+1, 0, "全员")), sheet.CSV)
		if err != nil {
			t.Fatal(err)
		}
		if res.Rows != tc.limit+1 || res.Added != tc.limit || res.HeaderRow != 1 || len(res.Errors) != 1 {
			t.Fatalf("%s: %d rows, %d added, header %d, errors %+v", tc.book, res.Rows, res.Added, res.HeaderRow, res.Errors)
		}
		e := res.Errors[0]
		want := fmt.Sprintf("holds at most %d contacts", tc.limit)
		if e.Row != tc.limit+2 || e.Reason != RowContactsLimit || !strings.Contains(e.Detail, want) || e.Number != cmcc(tc.limit) {
			t.Errorf("%s: limit error %+v", tc.book, e)
		}
		// Adding one more: a clear error; updating an existing one still works.
		_, err = f.p.AddContact(tc.actor, tc.book, ContactInput{Name: "x", Number: cmcc(9999)})
		if !errors.Is(err, ErrContactsLimit) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: add past the limit: %v", tc.book, err)
		}
		res, err = f.p.ImportContacts(tc.actor, tc.book, strings.NewReader("改名,"+cmcc(0)+",新组\n"+cmcc(9998)+"\n"), sheet.CSV)
		if err != nil {
			t.Fatal(err)
		}
		if res.Updated != 1 || len(res.Errors) != 1 || res.Errors[0].Reason != ReasonInvalidNumber.String() || res.Errors[0].Detail != "empty number" {
			t.Errorf("%s: update a full book: %+v", tc.book, res)
		}
		cs, err := f.p.Contacts(tc.actor, tc.book, "")
		if err != nil || len(cs) != tc.limit {
			t.Fatalf("%s: %d contacts, %v", tc.book, len(cs), err)
		}
		// Room again after a delete.
		if err := f.p.DeleteContact(tc.actor, tc.book, cmcc(1)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.p.AddContact(tc.actor, tc.book, ContactInput{Name: "x", Number: cmcc(9999)}); err != nil {
			t.Errorf("%s: add after a delete: %v", tc.book, err)
		}
	}
}

func TestContactsImportRows(t *testing.T) {
	f := newFixture(t)
	book := EnterpriseBook(entA)
	if _, err := f.p.AddContact(f.aAdmin, book, ContactInput{Name: "老王", Number: "13800138009", Groups: []string{"财务部"}}); err != nil {
		t.Fatal(err)
	}
	file := "姓名,号码,分组\n" +
		"张三,13800138000,销售部;市场部\n" + // 2
		"李四,,销售部\n" + // 3: empty number
		"王五,020-88888888,销售部\n" + // 4: landline
		",13800138001,销售部\n" + // 5: no name
		"\n" + // 6: blank, not a row
		"张三,+86 138-0013-8000,研发部、销售部\n" + // 7: repeats row 2: merged
		"老王,13800138009,财务部\n" + // 8: unchanged
		"赵六,13800138002," + strings.Repeat("组", 33) + "\n" + // 9: group too long
		"钱七,13800138003,\n" // 10: no group
	res, err := f.p.ImportContacts(f.aAdmin, book, strings.NewReader(file), sheet.CSV)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[int]string{}
	for _, e := range res.Errors {
		reasons[e.Row] = e.Reason
	}
	wantReasons := map[int]string{3: "invalid_number", 4: "invalid_number", 5: "invalid_name", 9: "invalid_group"}
	if !reflect.DeepEqual(reasons, wantReasons) {
		t.Errorf("row errors %+v", res.Errors)
	}
	if res.Rows != 8 || res.Added != 2 || res.Duplicates != 1 || res.Unchanged != 1 || res.HeaderRow != 1 ||
		res.Rows != res.Added+res.Updated+res.Unchanged+res.Duplicates+len(res.Errors) {
		t.Errorf("result %+v", res)
	}
	cs, _ := f.p.Contacts(f.aUser, book, "研发部")
	if len(cs) != 1 || !reflect.DeepEqual(cs[0].Groups, []string{"销售部", "市场部", "研发部"}) {
		t.Errorf("merged contact %+v", cs)
	}
	gs, _ := f.p.ContactGroups(f.aUser, book)
	if !reflect.DeepEqual(gs, []GroupCount{{"市场部", 1}, {"研发部", 1}, {"财务部", 1}, {"销售部", 1}}) {
		t.Errorf("groups %+v", gs)
	}
	nums, err := f.p.GroupNumbers(f.aUser, book, []string{"销售部", "财务部", "市场部"})
	if err != nil || !reflect.DeepEqual(nums, []string{"+8613800138000", "+8613800138009"}) {
		t.Errorf("group numbers %v %v", nums, err)
	}
	if _, err := f.p.GroupNumbers(f.aUser, book, []string{"销售部", "销售布"}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "销售布") {
		t.Errorf("unknown group: %v", err)
	}

	// GBK (Excel on Chinese Windows) and XLSX with numbers as numbers.
	gbk, err := simplifiedchinese.GBK.NewEncoder().String("姓名,号码,分组\n孙八,13800138004,客服部\n")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := f.p.ImportContacts(f.aAdmin, book, strings.NewReader(gbk), sheet.CSV); err != nil || res.Added != 1 {
		t.Fatalf("GBK: %+v %v", res, err)
	}
	x := excelize.NewFile()
	_ = x.SetSheetRow("Sheet1", "A1", &[]any{"姓名", "号码", "分组"})
	_ = x.SetSheetRow("Sheet1", "A2", &[]any{"周九", 13800138005, "客服部|销售部"})
	_ = x.SetSheetRow("Sheet1", "A4", &[]any{"吴十", "", "客服部"})
	var buf bytes.Buffer
	if err := x.Write(&buf); err != nil {
		t.Fatal(err)
	}
	res, err = f.p.ImportContacts(f.aAdmin, book, &buf, sheet.XLSX)
	if err != nil || res.Added != 1 || len(res.Errors) != 1 || res.Errors[0].Row != 4 {
		t.Fatalf("XLSX: %+v %v", res, err)
	}
	if cs, _ := f.p.Contacts(f.aUser, book, "客服部"); len(cs) != 2 || cs[1].Number != "+8613800138005" || cs[1].Name != "周九" {
		t.Errorf("客服部 %+v", cs)
	}
	// Too many rows, or not a file at all: nothing is stored.
	big := contactsCSV(MaxContactImportRows+1, 0, "x")
	if _, err := f.p.ImportContacts(f.aAdmin, book, strings.NewReader(big), sheet.CSV); !errors.Is(err, ErrInvalid) {
		t.Errorf("too many rows: %v", err)
	}
	if _, err := f.p.ImportContacts(f.aAdmin, book, strings.NewReader("PK not a zip"), sheet.XLSX); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad XLSX: %v", err)
	}
	if cs, _ := f.p.Contacts(f.aUser, book, "x"); len(cs) != 0 {
		t.Errorf("a failed import stored %d contacts", len(cs))
	}
}

// TestImportEncodings: the whitelist and both address books read files
// alike (package sheet): a GBK CSV into the whitelist (which once refused
// it), UTF-16 text into a book, XLSX into both.
func TestImportEncodings(t *testing.T) {
	f := newFixture(t)
	xlsx := func(rows ...[]any) io.Reader {
		x := excelize.NewFile()
		defer x.Close()
		for i, r := range rows {
			if err := x.SetSheetRow("Sheet1", fmt.Sprintf("A%d", i+1), &r); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		if err := x.Write(&buf); err != nil {
			t.Fatal(err)
		}
		return &buf
	}

	// GBK, comma- or tab-separated, into the whitelist: the refused value is
	// reported as written, not as mojibake.
	for _, sep := range []string{",", "\t"} {
		gbk, err := simplifiedchinese.GBK.NewEncoder().String("手机号码" + sep + "备注\n13712345601" + sep + "张三\n无号码" + sep + "李四\n")
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.p.ImportWhitelist(f.aAdmin, entA, strings.NewReader(gbk), sheet.CSV)
		if err != nil {
			t.Fatalf("GBK %q: %v", sep, err)
		}
		if res.HeaderRow != 1 || res.Rows != 2 || len(res.Errors) != 1 || res.Errors[0].Row != 3 || res.Errors[0].Value != "无号码" {
			t.Errorf("GBK %q: %+v", sep, res)
		}
	}
	if st, ok := f.p.WhitelistStatus(entA, "+8613712345601"); !ok || st != WhitelistPending {
		t.Errorf("GBK number: %v %v", st, ok)
	}
	res, err := f.p.ImportWhitelist(f.aAdmin, entA, xlsx([]any{"号码"}, []any{13712345602}), sheet.XLSX)
	if err != nil || res.Added != 1 || res.HeaderRow != 1 {
		t.Errorf("XLSX whitelist: %+v %v", res, err)
	}

	// UTF-16 LE with a byte order mark (Excel's "Unicode text"), tab-separated,
	// into the personal book; XLSX into the enterprise book.
	u16 := []byte{0xFF, 0xFE}
	for _, r := range "姓名\t号码\t分组\r\n周一\t13800138011\t客服部\r\n" {
		u16 = append(u16, byte(r), byte(r>>8))
	}
	book := Book{Enterprise: entA, User: "a_user"}
	cres, err := f.p.ImportContacts(f.aUser, book, bytes.NewReader(u16), sheet.CSV)
	if err != nil || cres.Added != 1 || cres.HeaderRow != 1 || len(cres.Errors) != 0 {
		t.Fatalf("UTF-16: %+v %v", cres, err)
	}
	if cs, _ := f.p.Contacts(f.aUser, book, "客服部"); len(cs) != 1 || cs[0].Name != "周一" || cs[0].Number != "+8613800138011" {
		t.Errorf("UTF-16 contact %+v", cs)
	}
	cres, err = f.p.ImportContacts(f.aAdmin, EnterpriseBook(entA), xlsx([]any{"姓名", "号码", "分组"}, []any{"吴二", 13800138012, "研发部"}), sheet.XLSX)
	if err != nil || cres.Added != 1 {
		t.Fatalf("XLSX contacts: %+v %v", cres, err)
	}

	// The content decides: an XLSX file sent as CSV is still XLSX.
	res, err = f.p.ImportWhitelist(f.aAdmin, entA, xlsx([]any{13712345603}), sheet.CSV)
	if err != nil || res.Added != 1 {
		t.Errorf("XLSX named CSV: %+v %v", res, err)
	}
}
