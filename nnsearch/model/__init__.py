"""Search spaces, architectures (`Arch`), the student builder, and parameter/MAC counting."""
