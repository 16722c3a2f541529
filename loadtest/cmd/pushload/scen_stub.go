package main

func (b *bench) unicast(i int, engine, flagVal string) error { return nil }
func (b *bench) churn(i int, engine, flagVal string) error   { return nil }
func (b *bench) box(i int, engine, flagVal string) error     { return nil }
