package policy

import (
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Applications (开户申请, FAQ 1 and 15): an enterprise applies online, an
// account manager approves (the enterprise and its admin user are created)
// or rejects with a reason, and the applicant follows the state with the
// application number.
//
// Submitting never reads the enterprises: whether the group code is taken
// is found at approval only, so an application tells nothing about which
// codes exist, by its answer or its timing.

// Application states.
const (
	ApplicationPending  = "pending"
	ApplicationApproved = "approved"
	ApplicationRejected = "rejected"
)

// Application bounds.
const (
	// MaxPendingApplications bounds the applications waiting for an account
	// manager (and so the file's growth under a flood that the API's per
	// address limit does not stop); more are refused with ErrApplicationsFull.
	MaxPendingApplications = 10_000
	maxRejectReason        = 200 // characters
	applicationPrefix      = "app_"
	applicationAdminName   = "管理员" // the admin user's name (its user signature)
)

var (
	// bucketApplications: number → JSON Application, and the bucket
	// keyPendingApplications indexing the pending ones (number → nothing).
	bucketApplications     = []byte("policy_applications")
	keyPendingApplications = []byte("pending")
)

func createApplicationBuckets(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketApplications)
	if err != nil {
		return err
	}
	_, err = b.CreateBucketIfNotExists(keyPendingApplications)
	return err
}

var (
	// ErrDecided: the application was already approved or rejected.
	ErrDecided = errors.New("policy: application already decided")
	// ErrApplicationsFull: MaxPendingApplications are waiting.
	ErrApplicationsFull = errors.New("policy: too many pending applications")
)

// NewApplication is what an enterprise submits.
type NewApplication struct {
	GroupCode     string
	Name          string
	ContactMobile string // any format Classify accepts; stored as E.164
	Package       int
	Signature     string // "【…】", required
}

// Application is a stored application.
type Application struct {
	Number        string    `json:"number"` // "app_" + 26 base32 characters (128 random bits)
	GroupCode     string    `json:"group_code"`
	Name          string    `json:"name"`
	ContactMobile string    `json:"contact_mobile"` // E.164
	Package       int       `json:"package"`
	Signature     string    `json:"signature"`
	State         string    `json:"state"`
	Reason        string    `json:"reason,omitempty"`          // why it was rejected
	AdminSystemID string    `json:"admin_system_id,omitempty"` // the admin user created at approval
	DecidedBy     string    `json:"decided_by,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	DecidedAt     time.Time `json:"decided_at,omitzero"`
}

var applicationEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func (s *Store) applicationNumber() (string, error) {
	var raw [16]byte
	if _, err := io.ReadFull(s.opts.Rand, raw[:]); err != nil {
		return "", fmt.Errorf("policy: application number: %w", err)
	}
	return applicationPrefix + strings.ToLower(applicationEncoding.EncodeToString(raw[:])), nil
}

// CheckApplication checks and normalises an application as
// SubmitApplication does, without storing it (callers check before they
// charge a rate limit). It does not look at the enterprises.
func (s *Store) CheckApplication(na *NewApplication) error {
	if err := validCode("group_code", na.GroupCode); err != nil {
		return err
	}
	if err := validText(entNameField, na.Name, 1, 64); err != nil {
		return err
	}
	m, err := s.cls.normalizeMobile(na.ContactMobile)
	if err != nil {
		return invalidField("contact_mobile", na.ContactMobile+" 不是有效的中国大陆手机号码", "contact mobile %q: not a valid Chinese mobile number", na.ContactMobile)
	}
	na.ContactMobile = m
	if _, ok := s.opts.Packages.Lookup(na.Package); !ok {
		return invalidField("package", fmt.Sprintf("套餐表中没有套餐 %d", na.Package), "package %d is not in the package table", na.Package)
	}
	if na.Signature == "" {
		return invalidField("signature", "请填写签名，例如【某某公司】", "signature: required, e.g. 【某某公司】")
	}
	return ValidSignature(na.Signature)
}

// SubmitApplication stores a new pending application (anyone may; callers
// rate-limit it). The answer and the work are the same whether the group
// code is taken or not.
func (s *Store) SubmitApplication(na NewApplication) (*Application, error) {
	if err := s.CheckApplication(&na); err != nil {
		return nil, err
	}
	num, err := s.applicationNumber()
	if err != nil {
		return nil, err
	}
	app := Application{Number: num, GroupCode: na.GroupCode, Name: na.Name, ContactMobile: na.ContactMobile,
		Package: na.Package, Signature: na.Signature, State: ApplicationPending, CreatedAt: s.now()}
	err = s.update(func(tx *bolt.Tx, _ *change) error {
		b := tx.Bucket(bucketApplications)
		idx := b.Bucket(keyPendingApplications)
		n := 0
		if err := idx.ForEach(func(_, _ []byte) error { n++; return nil }); err != nil { // ≤ MaxPendingApplications keys
			return err
		}
		if n >= MaxPendingApplications {
			return ErrApplicationsFull
		}
		if b.Get([]byte(num)) != nil { // 128 random bits: cannot happen
			return fmt.Errorf("%w: application %s", ErrExists, num)
		}
		if err := idx.Put([]byte(num), nil); err != nil {
			return err
		}
		return putJSON(b, num, &app)
	})
	if err != nil {
		return nil, err
	}
	return &app, nil
}

// putDecided stores a decided application and takes it off the pending index.
func putDecided(tx *bolt.Tx, app *Application) error {
	b := tx.Bucket(bucketApplications)
	if err := b.Bucket(keyPendingApplications).Delete([]byte(app.Number)); err != nil {
		return err
	}
	return putJSON(b, app.Number, app)
}

func loadApplication(tx *bolt.Tx, number string) (*Application, error) {
	v := tx.Bucket(bucketApplications).Get([]byte(number))
	if v == nil {
		return nil, fmt.Errorf("%w: application %s", ErrNotFound, number)
	}
	var app Application
	if err := json.Unmarshal(v, &app); err != nil {
		return nil, fmt.Errorf("policy: application %q: %w", number, err)
	}
	return &app, nil
}

// LookupApplication returns an application by its number, for the applicant
// (who knows the number) and the operator: ErrNotFound if there is none.
func (s *Store) LookupApplication(number string) (*Application, error) {
	var app *Application
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		app, err = loadApplication(tx, number)
		return err
	})
	if err != nil {
		return nil, dbErr(err)
	}
	return app, nil
}

// Applications lists applications in state ("" = every state), oldest
// first, at most limit of them (the operator of every enterprise only:
// an application is for an enterprise not opened yet; reads the file).
func (s *Store) Applications(a Actor, state string, limit int) ([]Application, error) {
	if !a.Everywhere() {
		return nil, ErrForbidden
	}
	switch state {
	case "", ApplicationPending, ApplicationApproved, ApplicationRejected:
	default:
		return nil, invalidField("state", "状态须为 pending（待审批）、approved（已开户）、rejected（已拒绝）或 all", "state %q: pending, approved or rejected", state)
	}
	var out []Application
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketApplications)
		if state == ApplicationPending { // the index: no need to read the decided ones
			return b.Bucket(keyPendingApplications).ForEach(func(k, _ []byte) error {
				app, err := loadApplication(tx, string(k))
				if err != nil {
					return err
				}
				out = append(out, *app)
				return nil
			})
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil { // the pending index
				return nil
			}
			var app Application
			if err := json.Unmarshal(v, &app); err != nil {
				return fmt.Errorf("policy: application %q: %w", k, err)
			}
			if state == "" || app.State == state {
				out = append(out, app)
			}
			if limit > 0 && len(out) >= 2*limit { // bounded: keep the oldest limit
				sortApplications(out)
				out = out[:limit]
			}
			return nil
		})
	})
	if err != nil {
		return nil, dbErr(err)
	}
	sortApplications(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// ApproveApplication creates the enterprise of a pending application and its
// admin user (system_id adminID, or the group code if ""; registered mobile
// the contact mobile) in one transaction, and marks the application
// approved. It returns the admin's first password, which the caller sends by
// SMS to user.Mobile and nowhere else. A group code or system_id already
// taken is ErrExists and changes nothing: the application stays pending.
func (s *Store) ApproveApplication(a Actor, number, adminID string) (*Application, *User, string, error) {
	if !a.Everywhere() {
		return nil, nil, "", ErrForbidden
	}
	app, err := s.LookupApplication(number)
	if err != nil {
		return nil, nil, "", err
	}
	if adminID == "" {
		adminID = app.GroupCode
	}
	if err := validSystemID(adminID); err != nil {
		return nil, nil, "", fmt.Errorf("admin %w", err)
	}
	pw, err := s.randomPassword()
	if err != nil {
		return nil, nil, "", err
	}
	h, err := s.hash(pw)
	if err != nil {
		return nil, nil, "", err
	}
	var out Application
	var user User
	err = s.update(func(tx *bolt.Tx, ch *change) error {
		app, err := loadApplication(tx, number)
		if err != nil {
			return err
		}
		if app.State != ApplicationPending {
			return fmt.Errorf("%w: application %s is %s", ErrDecided, number, app.State)
		}
		now := s.now()
		e := Enterprise{Code: app.GroupCode, Name: app.Name, Signature: app.Signature, Package: app.Package,
			CreatedAt: now, UpdatedAt: now}
		if err := s.validEnterprise(&e); err != nil {
			return err
		}
		eb := tx.Bucket(bucketEnterprises)
		if eb.Get([]byte(e.Code)) != nil {
			return fmt.Errorf("%w: enterprise %s", ErrExists, e.Code)
		}
		if err := putJSON(eb, e.Code, &e); err != nil {
			return err
		}
		ch.ents = append(ch.ents, e.Code)
		user = User{Enterprise: e.Code, Name: applicationAdminName, Mobile: app.ContactMobile, SystemID: adminID,
			Role: RoleAdmin, CreatedAt: now, UpdatedAt: now}
		if err := s.validUser(&user); err != nil {
			return err
		}
		if err := s.putNewUser(tx, ch, &userRec{User: user, PassHash: h}); err != nil {
			return err
		}
		app.State, app.AdminSystemID, app.DecidedBy, app.DecidedAt = ApplicationApproved, adminID, a.who(), now
		out = *app
		return putDecided(tx, app)
	})
	if err != nil {
		return nil, nil, "", err
	}
	return &out, &user, pw, nil
}

// RejectApplication rejects a pending application with a reason the
// applicant sees (operator only).
func (s *Store) RejectApplication(a Actor, number, reason string) (*Application, error) {
	if !a.Everywhere() {
		return nil, ErrForbidden
	}
	if err := validText(reasonField, reason, 1, maxRejectReason); err != nil {
		return nil, err
	}
	var out Application
	err := s.update(func(tx *bolt.Tx, _ *change) error {
		app, err := loadApplication(tx, number)
		if err != nil {
			return err
		}
		if app.State != ApplicationPending {
			return fmt.Errorf("%w: application %s is %s", ErrDecided, number, app.State)
		}
		app.State, app.Reason, app.DecidedBy, app.DecidedAt = ApplicationRejected, reason, a.who(), s.now()
		out = *app
		return putDecided(tx, app)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func sortApplications(apps []Application) {
	slices.SortFunc(apps, func(x, y Application) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(x.Number, y.Number)
	})
}
