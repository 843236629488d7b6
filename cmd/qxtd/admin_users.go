package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qxtd/qxtd/api"
)

// --- users ---

// password returns the --password value if given, else the first line of
// standard input.
func password(c *cobra.Command, flagValue string) (string, error) {
	if c.Flags().Changed("password") {
		return flagValue, nil
	}
	line, err := bufio.NewReader(c.InOrStdin()).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", usagef("no --password, and none on standard input")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func printUser(w io.Writer, u *api.User) {
	fmt.Fprintf(w, "system_id\t%s\n", u.SystemID)
	fmt.Fprintf(w, "enterprise\t%s\n", u.Enterprise)
	fmt.Fprintf(w, "name\t%s\n", u.Name)
	fmt.Fprintf(w, "mobile\t%s\n", u.Mobile)
	fmt.Fprintf(w, "role\t%s\n", u.Role)
	fmt.Fprintf(w, "show_signature\t%s\n", yesNo(u.ShowSignature))
	fmt.Fprintf(w, "api_key\t%s\n", yesNo(u.HasAPIKey))
	if u.Extension != "" {
		fmt.Fprintf(w, "extension\t%s\n", u.Extension)
	}
	if u.LongReplies != "" {
		fmt.Fprintf(w, "long_replies\t%s\n", u.LongReplies)
	}
}

// longRepliesUsage is the --long-replies flag's help.
const longRepliesUsage = "how a reply too long for one SMS reaches the user's SMPP binds: payload (whole, in message_payload), " +
	"udh8 or udh16 (in parts with a concatenation UDH), sar (in parts with the sar_* TLVs)"

func (a *adminCLI) userAdd() *cobra.Command {
	var in api.NewUser
	var pw string
	c := a.leaf("add CODE SYSTEM_ID --name N [--mobile M] [--role user|admin] [--show-signature] [--extension E] [--long-replies payload|udh8|udh16|sar] [--password P]",
		"Create a user of an enterprise", 2, 2, func(c *cobra.Command, cl *api.Client, args []string) error {
			in.SystemID = args[1]
			if in.Name == "" {
				return usagef("user add: --name is required")
			}
			var err error
			if in.Password, err = password(c, pw); err != nil {
				return err
			}
			u, err := cl.CreateUser(args[0], in)
			if err != nil {
				return err
			}
			return a.out(c, u, func(w io.Writer) { printUser(w, u) })
		})
	fs := c.Flags()
	fs.StringVar(&in.Name, "name", "", "user name, unique in the enterprise (required)")
	fs.StringVar(&in.Mobile, "mobile", "", "registered mobile (password resets)")
	fs.StringVar(&in.Role, "role", "user", "user or admin")
	fs.BoolVar(&in.ShowSignature, "show-signature", false, "append the user's name to its messages")
	fs.StringVar(&in.Extension, "extension", "", "extension of the enterprise's service number (its messages' source, its replies)")
	fs.StringVar(&in.LongReplies, "long-replies", "payload", longRepliesUsage)
	fs.StringVar(&pw, "password", "", "SMPP password, 6–8 characters (default: read from stdin)")
	return c
}

func (a *adminCLI) userList() *cobra.Command {
	return a.leaf("list CODE", "List an enterprise's users", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
		users, err := cl.Users(args[0])
		if err != nil {
			return err
		}
		return a.out(c, api.UserList{Users: users}, func(w io.Writer) {
			fmt.Fprintln(w, "SYSTEM_ID\tNAME\tROLE\tMOBILE\tSHOW_SIGNATURE\tAPI_KEY")
			for _, u := range users {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", u.SystemID, u.Name, u.Role, u.Mobile, yesNo(u.ShowSignature), yesNo(u.HasAPIKey))
			}
		})
	})
}

func (a *adminCLI) userShow() *cobra.Command {
	return a.leaf("show SYSTEM_ID", "Show a user", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
		u, err := cl.User(args[0])
		if err != nil {
			return err
		}
		return a.out(c, u, func(w io.Writer) { printUser(w, u) })
	})
}

func (a *adminCLI) userSet() *cobra.Command {
	var name, mobile, role, ext, longReplies string
	var show bool
	c := a.leaf("set SYSTEM_ID [--name N] [--mobile M] [--role user|admin] [--show-signature=BOOL] [--extension E (\"\": none)] [--long-replies payload|udh8|udh16|sar]",
		"Change a user", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
			var p api.UserPatch
			set := c.Flags().Changed
			if set("name") {
				p.Name = &name
			}
			if set("mobile") {
				p.Mobile = &mobile
			}
			if set("role") {
				p.Role = &role
			}
			if set("show-signature") {
				p.ShowSignature = &show
			}
			if set("extension") {
				p.Extension = &ext
			}
			if set("long-replies") {
				p.LongReplies = &longReplies
			}
			if p == (api.UserPatch{}) {
				return usagef("user set: nothing to change")
			}
			u, err := cl.UpdateUser(args[0], p)
			if err != nil {
				return err
			}
			return a.out(c, u, func(w io.Writer) { printUser(w, u) })
		})
	fs := c.Flags()
	fs.StringVar(&name, "name", "", "user name")
	fs.StringVar(&mobile, "mobile", "", "registered mobile")
	fs.StringVar(&role, "role", "", "user or admin")
	fs.BoolVar(&show, "show-signature", false, "append the user's name to its messages")
	fs.StringVar(&ext, "extension", "", "extension of the enterprise's service number; \"\" removes it")
	fs.StringVar(&longReplies, "long-replies", "", longRepliesUsage+"; from the next reply")
	return c
}

func (a *adminCLI) userPasswd() *cobra.Command {
	var pw string
	c := a.leaf("passwd SYSTEM_ID [--password P]", "Set a user's SMPP password", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			p, err := password(c, pw)
			if err != nil {
				return err
			}
			if err := cl.SetPassword(args[0], p); err != nil {
				return err
			}
			return a.done(c, "password set for "+args[0])
		})
	c.Flags().StringVar(&pw, "password", "", "the new SMPP password (default: read from stdin)")
	return c
}

func (a *adminCLI) userDelete() *cobra.Command {
	return a.leaf("delete SYSTEM_ID", "Delete a user", 1, 1, func(c *cobra.Command, cl *api.Client, args []string) error {
		if err := cl.DeleteUser(args[0]); err != nil {
			return err
		}
		return a.done(c, "user "+args[0]+" deleted")
	})
}

func (a *adminCLI) userAPIKey() *cobra.Command {
	var revoke bool
	c := a.leaf("apikey SYSTEM_ID [--revoke]", "Issue (or revoke) a user's HTTP API key", 1, 1,
		func(c *cobra.Command, cl *api.Client, args []string) error {
			if revoke {
				if err := cl.RevokeAPIKey(args[0]); err != nil {
					return err
				}
				return a.done(c, "API key of "+args[0]+" revoked")
			}
			k, err := cl.IssueAPIKey(args[0])
			if err != nil {
				return err
			}
			return a.out(c, k, func(w io.Writer) {
				fmt.Fprintf(w, "API key of %s (shown only now; it replaces any previous key):\n%s\n", k.SystemID, k.APIKey)
			})
		})
	c.Flags().BoolVar(&revoke, "revoke", false, "remove the user's API key")
	return c
}
