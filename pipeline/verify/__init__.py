"""Answer verification: extraction, equivalence (fast paths, then math-verify), CoT quality checks."""

from pipeline.verify.extract import extract_answer
from pipeline.verify.model import Extraction, Verdict
from pipeline.verify.quality import QualityConfig, QualityResult, check_cot_quality
from pipeline.verify.verifier import Verifier, VerifierConfig, VerifyItem, judge_answer, judge_response

__all__ = [
    "Extraction",
    "QualityConfig",
    "QualityResult",
    "Verdict",
    "Verifier",
    "VerifierConfig",
    "VerifyItem",
    "check_cot_quality",
    "extract_answer",
    "judge_answer",
    "judge_response",
]
