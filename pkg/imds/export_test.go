package imds

// OptionalKeys exposes optionalKeys to the external tests.
var OptionalKeys = optionalKeys
