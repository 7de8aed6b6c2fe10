"""Answer-equivalence cases for tests/test_grading.py, collected from public graders' test suites.

Each entry is (gold, pred, equivalent, id). Sources, cited per block:
- hendrycks/math modeling/math_equivalence_test.py (the MATH paper's `is_equiv` unit tests)
- huggingface/Math-Verify tests/test_all.py (math-verify's own regression tests)
- QwenLM/Qwen2.5-Math evaluation/grader.py (`TestMathEquality` and `_test_math_equal`)
- openai/prm800k prm800k/grading/grader.py (rules of `grade_answer`: units, degrees, tuple brackets)
- ours: cases this project's brief asks for, written for this file.
Where our verdict differs from the source's, the comment says so and why.
"""

from __future__ import annotations

# hendrycks/math modeling/math_equivalence_test.py
HENDRYCKS = [
    ("\\tfrac{1}{2} + \\frac1{72}", "\\frac{1}{2} + 2/3", False, "hendrycks-fractions"),
    ("10, 4, 2", "4, 12, 2", False, "hendrycks-order2"),
    ("\\tfrac{1}{2} +\\! \\frac1{72}", "\\dfrac{1}{2} +\\frac{1}{72}", True, "hendrycks-dfrac"),
    ("10\\text{ units}", "10 ", True, "hendrycks-units"),
    ("10\\text{ units}", "100 ", False, "hendrycks-units2"),
    ("10", "\\$10", True, "hendrycks-dollars"),
    ("\\left(x-2\\right)\\left(x+2\\right)", "(x-2)(x+2)", True, "hendrycks-parentheses"),
    ("0.1", ".1", True, "hendrycks-decimals2"),
    ("10\\%", "10", True, "hendrycks-percentage"),
    ("10\\sqrt{3} + \\sqrt4", "10\\sqrt3 + \\sqrt{4}", True, "hendrycks-sqrt"),
    ("\\frac34i", "\\frac{3}{4}i", True, "hendrycks-frac"),
    ("\\tfrac83", "\\frac{8}{3}", True, "hendrycks-tfrac"),
    ("5x - 7y + 11z + 4 = 0", "x + y - z + 2 = 0", False, "hendrycks-expression"),
    ("1/2", "\\frac{1}{2}", True, "hendrycks-half"),
    # hendrycks expects False for reordered lists ("10, 4, -2" vs "4, 10, -2", "0.1, 4, 2" vs "4, .1, 2");
    # math-verify reads a bare comma list as a set, so these are equal here (MATH's "list all solutions").
    ("10, 4, -2", "4, 10, -2", True, "hendrycks-order-as-set"),
]

# huggingface/Math-Verify tests/test_all.py (test_number_extraction, test_latex_notation, test_sets_handling,
# test_percent_notation, test_latex_notation_math, test_relations_math, test_matrix_extraction,
# test_complex_math_expressions)
MATH_VERIFY = [
    ("7425000", "7,425,000", True, "mv-thousands"),
    ("1000", "1000.0", True, "mv-trailing-zero"),
    ("1000.99", "1,000.99", True, "mv-thousands-decimal"),
    ("0.4", ".4", True, "mv-no-leading-zero"),
    ("-10/9", "-\\frac{10}{9}", True, "mv-negative-fraction"),
    ("[0,1)", "[0,1)", True, "mv-interval-same"),
    ("[0,9)", "[0,1)", False, "mv-interval-end"),
    ("(0,9)", "[0,9)", False, "mv-interval-bracket"),
    ("1/3", "\\frac13", True, "mv-malformed-frac"),
    ("1", "\\frac3{3}", True, "mv-malformed-frac2"),
    ("\\sqrt{3}", "\\sqrt3", True, "mv-malformed-sqrt"),
    ("1/3", "\\cfrac{1}{3}", True, "mv-cfrac"),
    ("1/3", "\\left( \\frac{1}{3} \\right)", True, "mv-left-right"),
    ("1/3", "\\frac{1}{3} \\text{meters}", True, "mv-text-unit"),
    ("1/3", "k = \\frac{1}{3}", True, "mv-assignment"),
    ("28\\%", "28", True, "mv-percent"),
    ("0.28", "28", False, "mv-percent-not-fraction"),
    ("28/100", "28", False, "mv-percent-not-fraction2"),
    ("28", "28/100", False, "mv-percent-not-fraction3"),
    ("3\\sqrt{13}", "3\\sqrt{13}", True, "mv-3sqrt13"),
    ("90^\\circ", "90^\\circ", True, "mv-degrees"),
    ("15\\mbox{ cm}^2", "15\\mbox{ cm}^2", True, "mv-mbox-unit"),
    ("(6,31,-1)", "(6,31,-1)", True, "mv-triple"),
    ("\\{1\\pm\\sqrt{5},-2\\}", "\\{1\\pm\\sqrt{5},-2\\}", True, "mv-set-pm"),
    (
        "[-1, -\\frac{1}{2}) \\cup (-\\frac{1}{2}, 0) \\cup (0, 1) \\cup (1, \\infty)",
        "[-1, -\\tfrac12) \\cup (-\\tfrac12, 0) \\cup (0, 1) \\cup (1, \\infty)",
        True,
        "mv-interval-union",
    ),
    ("\\sqrt{2}+\\sqrt{5}", "\\sqrt 2+\\sqrt 5", True, "mv-sqrt-space"),
    ("\\frac{9}{4}\\pi", "\\frac94\\pi", True, "mv-frac-pi"),
    ("125", "125\\textnormal{ miles}", True, "mv-textnormal-unit"),
    ("\\text{Evelyn}", "\\text{Evelyn}", True, "mv-text-name"),
    ("x \\geq 5", "5 \\leq x", True, "mv-flipped-inequality"),
    ("x > 5", "x < 5", False, "mv-wrong-inequality"),
    ("11", "x=11", True, "mv-bare-vs-equation"),
    ("k=1", "1", True, "mv-equation-vs-bare"),
    ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}", True, "mv-line-equation"),
    ("\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}", "\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}", True, "mv-identity"),
    ("\\begin{bmatrix}0 & 0 \\\\0 & 0\\end{bmatrix}", "\\begin{pmatrix}0 & 0 \\\\0 & 0\\end{pmatrix}", True, "mv-bmatrix"),
    ("\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix}", "\\begin{pmatrix}1 & 2 \\\\ 3 & 5\\end{pmatrix}", False, "mv-matrix-entry"),
    ("\\frac{x+2}{7}", "\\frac{x}{7}+\\frac{2}{7}", True, "mv-qwen-algebra"),
    ("\\tan^2(y)+1", "\\sec^2(y)", True, "mv-qwen-trig"),
    ("(1,\\frac{9}{2})", "(1,4.5)", True, "mv-qwen-tuple-decimal"),
    ("\\frac{1}{12}", "0.0833333333333333", True, "mv-qwen-decimal"),
    ("2", "\\frac{1+\\sqrt{5}}{2}", False, "mv-qwen-golden"),
    ("1\\sqrt{19}", "1", False, "mv-qwen-sqrt19"),
    ("x+2n+1", "x+1", False, "mv-qwen-extra-term"),
]

# QwenLM/Qwen2.5-Math evaluation/grader.py (TestMathEquality.test_math_equal, test_is_numerical_equal)
QWEN = [
    ("10", "10", True, "qwen-same"),
    ("0.1", "10\\%", True, "qwen-percent-as-fraction"),
    ("0.2", "10\\%", False, "qwen-percent-wrong"),
    ("[1, 2, 3]", "[1, 2, 3]", True, "qwen-list"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True, "qwen-matrix"),
    ("x = y", "x = y", True, "qwen-equation"),
    ("10", "20", False, "qwen-different"),
    ("x = y", "x = z", False, "qwen-different-equation"),
]

# openai/prm800k prm800k/grading/grader.py: `_normalize` drops units ("cm", "inch", ...) and "^\circ";
# `grade_answer` rejects tuples/intervals whose brackets or element order differ.
PRM800K = [
    ("5", "5\\text{ cm}", True, "prm-unit-cm"),
    ("10", "10\\text{ inches}", True, "prm-unit-inches"),
    ("30", "30^\\circ", True, "prm-degrees"),
    ("30^{\\circ}", "30", True, "prm-degrees-braced"),
    ("(1,2)", "(2,1)", False, "prm-tuple-order"),
    ("[1,2)", "(1,2)", False, "prm-bracket-mismatch"),
    ("\\frac{1}{2}", "\\frac{2}{4}", True, "prm-unreduced-fraction"),  # prm800k says False; value is equal
]

# Ours: every answer form the brief lists, each with a non-equivalent counterpart.
OURS = [
    ("\\frac12", "0.5", True, "frac-shorthand-decimal"),
    ("\\dfrac{1}{2}", "1/2", True, "dfrac-slash"),
    ("0.5", "\\frac{1}{2}", True, "decimal-frac"),
    ("1/2", "2", False, "half-vs-two"),
    ("3\\sqrt{13}", "\\sqrt{117}", True, "root-simplified"),
    ("3", "3\\sqrt{13}", False, "root-coefficient-only"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True, "root-rationalized"),
    ("(-\\infty, 3]", "(-\\infty,3]", True, "interval-spacing"),
    ("(-\\infty, 3]", "(-\\infty, 3)", False, "interval-bracket"),
    ("\\{1,2\\}", "\\{2,1\\}", True, "set-order"),
    ("\\{1,2\\}", "\\{1,3\\}", False, "set-different"),
    ("(1,2)", "\\left( 1, 2 \\right)", True, "tuple-left-right"),
    ("(1,2)", "(2,1)", False, "tuple-order"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True, "point-polar"),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\-2\\end{pmatrix}", True, "matrix-spacing"),
    ("\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "\\begin{pmatrix} -2 \\\\ 1 \\end{pmatrix}", False, "matrix-order"),
    ("5\\text{ cm}", "5", True, "unit-cm"),
    ("10\\text{ inches}", "10", True, "unit-inches"),
    ("10\\text{ inches}", "12", False, "unit-different-number"),
    ("30^\\circ", "30", True, "degrees"),
    ("30^\\circ", "60", False, "degrees-different"),
    ("50\\%", "50", True, "percent"),
    ("50\\%", "0.5", True, "percent-as-fraction"),
    ("50\\%", "5", False, "percent-different"),
    ("\\text{(C)}", "C", True, "choice-text"),
    ("\\text{(C)}", "(C)", True, "choice-parens"),
    ("\\text{(C)}", "D", False, "choice-different"),
    ("\\text{Monday}", "Monday", True, "text-day"),
    ("\\text{Monday}", "\\text{Tuesday}", False, "text-day-different"),
    ("x=5", "5", True, "assignment-vs-bare"),
    ("5", "x = 5", True, "bare-vs-assignment"),
    ("x=5", "x=6", False, "assignment-different"),
    ("10,\\!000", "10000", True, "thin-negative-space"),
    ("\\frac{1}{2}", "\\frac{1}{\\,2}", True, "thin-space"),
    ("2\\ \\text{cm}", "2", True, "control-space"),
    ("1,234", "1234", True, "thousands"),
    ("1,234", "1.234", False, "thousands-vs-decimal"),
    ("1,234,567", "1234567", True, "thousands-millions"),
    ("-3", "-3.0", True, "negative"),
    ("-3", "3", False, "negative-sign"),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", True, "negative-fraction"),
    ("+5", "5", True, "leading-plus"),
    ("\\frac{\\pi}{2}", "\\pi/2", True, "pi-fraction"),
    ("2\\pi", "6.283185307", True, "pi-decimal"),
    ("2\\pi", "\\pi", False, "pi-different"),
    ("1.5\\times10^3", "1500", True, "scientific-times"),
    ("6.02\\times 10^{23}", "6.02e23", True, "scientific-e"),  # math-verify alone: False (reads e as Euler's e)
    ("0.001", "1e-3", True, "scientific-negative-exponent"),
    ("0.5", "5", False, "decimal-vs-integer"),
    ("\\$18.00", "18", True, "dollars"),
    ("14{,}916", "14916", True, "braced-comma"),
    ("x^2+2x+1", "(x+1)^2", True, "polynomial"),
    ("0.3", "0.30000000000000004", True, "float-noise"),
]

ALL = HENDRYCKS + MATH_VERIFY + QWEN + PRM800K + OURS
