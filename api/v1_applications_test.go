package api

import "testing"

func TestOpenAPISelfServiceSchemas(t *testing.T) {
	checkSchemas(t, loadOpenAPI(t), map[string]any{
		"ApplicationRequest": ApplicationRequest{},
		"ApplicationStatus":  ApplicationStatus{},
		"PasswordChange":     PasswordChange{},
		"PasswordReset":      PasswordReset{},
	})
}
