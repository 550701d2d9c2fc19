// Command empty does nothing: built with the plugin's flags, its exec time
// is the floor any Go CNI plugin's call sits on.
package main

func main() {}
