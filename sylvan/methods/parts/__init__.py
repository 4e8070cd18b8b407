"""Parts a method holds rather than bases it inherits: the classes it has seen
(`seen_classes`), the teacher it distils from (`teacher`). A method holds a part with
`Method.hold(name, make)`; the part is told when a task ends and its state goes into the
method's checkpoints, as the method's own does."""
