package api

// opsRoutes registers the operations endpoints (bill, DLR export, backup).
func (s *Server) opsRoutes() {}
