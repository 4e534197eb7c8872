"""The store report page /r/{store_code} (issue 21, bot/web/customer/report.py)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ReportPageSettings(BaseSettings):
    report_page_limit_per_ip_hour: int = Field(default=20, ge=1, description="Reports one IP address may send "
                                                                            "through /r/ per hour.")
    report_page_max_photo_bytes: int = Field(default=5_242_880, ge=1024, description="Largest photo on the "
                                                                                     "report page.")
