//! Sessions: a program on a PTY or on pipes, its output log and its screen.
pub mod screen;
