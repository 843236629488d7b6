package console

// Stub: the pages of this group are being written.
var sendRoutes = []route{}
