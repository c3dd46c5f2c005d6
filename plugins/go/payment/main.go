package main

// The plugin is a library (a reactor): the host calls its exports, never main.
func main() {}
