"""The course around the library: exercises, student copies, grading, and which model a notebook shows.

Read in this order: ``exercises`` (the checkers the notebooks call, one module per topic), ``student``
(``make student``: copies with the solutions removed), ``grade`` (``make grade``: run and score a class's
notebooks), ``model_choice`` (notebooks 05-07: your run, a named checkpoint, or the starter weights).
"""
