package main

import (
	"fmt"

	"github.com/qxtd/qxtd/policy"
)

// policyConfig turns the file's policy section into policy.Config.
func policyConfig(c *Config) (policy.Config, error) {
	pc := policy.Config{
		HomeProvince:        c.Policy.HomeProvince,
		DefaultTPS:          c.Policy.DefaultTPS,
		BcryptCost:          c.Policy.BcryptCost,
		MaxWhitelist:        c.Policy.WhitelistMaxEntries,
		MaxPendingWhitelist: c.Policy.WhitelistMaxPending,
		MaxOptOuts:          c.OptOut.MaxEntries,
	}
	for i, p := range c.Policy.Packages {
		fee, err := policy.ParseYuan(p.FeeYuan)
		if err != nil {
			return pc, fmt.Errorf("policy.packages[%d].fee_yuan: %w", i, err)
		}
		over, err := policy.ParseYuan(p.OverageYuan)
		if err != nil {
			return pc, fmt.Errorf("policy.packages[%d].overage_yuan: %w", i, err)
		}
		pc.Packages = append(pc.Packages, policy.Package{ID: p.ID, FeeFen: fee, Included: p.Included, OverageFen: over})
	}
	return pc, nil
}

// seedData is what the file asks to exist: enterprises with their
// approved numbers, users, overrides. Accounts whose enterprise is not
// listed imply one (code = enterprise or system_id) with the account's
// signature, package 1 and national scope, as issue #2's shape had it.
func seedData(c *Config) (policy.SeedData, error) {
	d := policy.SeedData{Force: c.Policy.SeedForce}
	idx := map[string]int{}
	for i, e := range c.Enterprises {
		capFen := int64(0)
		if e.CapYuan != "" {
			v, err := policy.ParseYuan(e.CapYuan)
			if err != nil {
				return d, fmt.Errorf("enterprises[%d].cap_yuan: %w", i, err)
			}
			capFen = v
		}
		name := e.Name
		if name == "" {
			name = e.Code
		}
		pkg := e.Package
		if pkg == 0 {
			pkg = 1
		}
		idx[e.Code] = len(d.Enterprises)
		d.Enterprises = append(d.Enterprises, policy.SeedEnterprise{
			Enterprise: policy.Enterprise{
				Code: e.Code, Name: name, Signature: e.Signature, Package: pkg,
				National: e.National, OffNet: e.OffNet, CapFen: capFen, NoOverage: e.NoOverage,
				TPS: e.TPS, NoWhitelist: e.NoWhitelist, MaxUsers: e.MaxUsers,
				Receipt:       policy.ReceiptHook{URL: e.ReceiptURL, ReplyURL: e.ReplyURL, Batch: e.ReceiptBatch, ReplyBatch: e.ReplyBatch},
				ServiceNumber: e.ServiceNumber, ExtLen: e.ExtLen,
			},
			Whitelist: e.Whitelist,
		})
	}
	for _, a := range c.Accounts {
		code := a.Enterprise
		if code == "" {
			code = a.SystemID
		}
		i, ok := idx[code]
		if !ok {
			i = len(d.Enterprises)
			idx[code] = i
			d.Enterprises = append(d.Enterprises, policy.SeedEnterprise{Enterprise: policy.Enterprise{
				Code: code, Name: code, Signature: a.Signature, Package: 1, National: true,
			}})
		}
		name := a.Name
		if name == "" {
			name = a.SystemID
		}
		role := policy.RoleUser
		if a.Admin {
			role = policy.RoleAdmin
		}
		d.Enterprises[i].Users = append(d.Enterprises[i].Users, policy.NewUser{
			Enterprise: code, Name: name, Mobile: a.Mobile, SystemID: a.SystemID,
			Password: a.Password, ShowSignature: a.ShowSignature, Role: role, Extension: a.Extension,
			LongReplies: a.LongReplies,
		})
	}
	for i, o := range c.Policy.Overrides {
		car, ok := policy.ParseCarrier(o.Carrier)
		if !ok && o.Carrier != "" {
			return d, fmt.Errorf("policy.overrides[%d].carrier: %q", i, o.Carrier)
		}
		d.Overrides = append(d.Overrides, policy.Override{Prefix: o.Prefix, Carrier: car, Province: o.Province})
	}
	return d, nil
}
